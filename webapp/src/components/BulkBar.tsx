// What can be done to the selected runs: tag, untag, move to a group, delete (with a confirm dialog).
import { useState } from "preact/hooks";
import type { BulkAction } from "../types";
import { DeleteDialog } from "./common";

export function BulkBar(props: { count: number; onAction: (a: BulkAction) => Promise<void>; onClear: () => void }) {
  const [text, setText] = useState("");
  const [confirm, setConfirm] = useState(false);
  const tags = () =>
    text
      .split(",")
      .map((t) => t.trim())
      .filter((t) => t !== "");
  const run = async (a: BulkAction) => {
    await props.onAction(a);
    setText("");
  };
  return (
    <div class="bulk" data-testid="bulk-bar">
      <strong>{props.count} selected</strong>
      <input
        type="text"
        aria-label="tags or group"
        placeholder="tag1, tag2 / group"
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
      />
      <button disabled={tags().length === 0} onClick={() => void run({ action: "tag", tags: tags() })}>
        Tag
      </button>
      <button disabled={tags().length === 0} onClick={() => void run({ action: "untag", tags: tags() })}>
        Untag
      </button>
      <button disabled={!text.trim()} onClick={() => void run({ action: "group", group: text.trim() })}>
        Move to group
      </button>
      <button class="danger" onClick={() => setConfirm(true)}>
        Delete…
      </button>
      <button class="link" onClick={props.onClear}>
        clear selection
      </button>
      {confirm && (
        <DeleteDialog
          what={`${props.count} run${props.count === 1 ? "" : "s"}`}
          onClose={() => setConfirm(false)}
          onConfirm={(files) => {
            setConfirm(false);
            void run({ action: "delete", delete_files: files });
          }}
        />
      )}
    </div>
  );
}
