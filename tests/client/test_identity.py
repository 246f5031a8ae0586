"""Generated run ids and names, and the config forms init() accepts (offline runs)."""

from __future__ import annotations

import argparse
import re
import string
from collections import Counter

import tracklog
from tracklog import _names, _refs


def test_generated_ids_are_eight_characters_of_lowercase_letters_and_digits() -> None:
    ids = {_refs.generate_id() for _ in range(500)}
    assert all(re.fullmatch(r"[a-z0-9]{8}", run_id) for run_id in ids)
    assert len(ids) == 500  # 36**8 possibilities: a repeat in 500 draws would mean a broken source


def test_choice_draws_every_option_about_equally_often() -> None:
    options = string.ascii_lowercase + string.digits
    counts = Counter(_refs.choice(options) for _ in range(36_000))
    assert set(counts) == set(options)
    # 1,000 expected per option, standard deviation about 31: outside 800-1,200 is a biased draw.
    assert all(800 < count < 1200 for count in counts.values()), counts


def test_generated_names_are_adjective_noun_and_the_run_number() -> None:
    names = [_names.generate(7) for _ in range(200)]
    assert all(re.fullmatch(r"[a-z]+-[a-z]+-7", name) for name in names)
    assert len(set(names)) > 20


def test_config_may_be_an_argparse_namespace() -> None:
    args = argparse.Namespace(lr=0.01, layers=3)
    run = tracklog.init(project="p", mode="offline", config=args)
    run.config.update(argparse.Namespace(batch=64))
    assert (run.config.lr, run.config.layers, run.config["batch"]) == (0.01, 3, 64)
    run.finish()
