"""A stand-in training process: streams a run's first frames to the daemon through the generated
stubs, prints "ready" once they are acked, then waits to be killed.

Usage: python trainer.py TARGET RUN_DIR SERVER ROWS
"""

from __future__ import annotations

import os
import queue
import sys
import threading

import grpc

from tracklog.v1 import daemon_pb2, daemon_pb2_grpc, records_pb2
from tracklogd.testing import frames, make_ref


def main() -> None:
    target, run_dir, server, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ref = make_ref()
    requests: queue.SimpleQueue[daemon_pb2.ClientMessage] = queue.SimpleQueue()
    attach = daemon_pb2.Attach(ref=ref, run_dir=run_dir, pid=os.getpid(), server=server)
    requests.put(daemon_pb2.ClientMessage(attach=attach))
    batch = [records_pb2.Frame(seq=seq, record=payload) for seq, payload in frames(ref, rows)]
    requests.put(daemon_pb2.ClientMessage(frames=daemon_pb2.FrameBatch(frames=batch)))
    channel = grpc.insecure_channel(target)
    replies = daemon_pb2_grpc.DaemonStub(channel).RunStream(iter(requests.get, None))
    for reply in replies:
        if reply.WhichOneof("kind") == "ack" and reply.ack.durable_seq == len(batch):
            print("ready", flush=True)
            threading.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    main()
