// Small shared pieces: the error banner, a confirm dialog, an inline text editor.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";

export function ErrorBanner({ error, onClose }: { error: string | null; onClose?: () => void }) {
  if (!error) return null;
  return (
    <div class="error" role="alert" data-testid="error">
      <span>{error}</span>
      {onClose && (
        <button class="link" onClick={onClose} aria-label="dismiss">
          ×
        </button>
      )}
    </div>
  );
}

export function errorText(exc: unknown): string {
  return exc instanceof Error ? exc.message : String(exc);
}

export function Dialog(props: { title: string; children: ComponentChildren; onClose: () => void }) {
  return (
    <div class="backdrop" onClick={(e) => e.target === e.currentTarget && props.onClose()}>
      <div class="dialog" role="dialog" aria-label={props.title} data-testid="dialog">
        <h3>{props.title}</h3>
        {props.children}
      </div>
    </div>
  );
}

/** A delete confirmation with the "also delete files" choice. */
export function DeleteDialog(props: {
  what: string;
  onConfirm: (deleteFiles: boolean) => void;
  onClose: () => void;
}) {
  const [files, setFiles] = useState(false);
  return (
    <Dialog title="Delete" onClose={props.onClose}>
      <p>Delete {props.what}? This cannot be undone; the run ids stay reserved.</p>
      <label>
        <input type="checkbox" checked={files} onChange={(e) => setFiles(e.currentTarget.checked)} /> Also delete
        files
      </label>
      <div class="actions">
        <button onClick={props.onClose}>Cancel</button>
        <button class="danger" data-testid="confirm-delete" onClick={() => props.onConfirm(files)}>
          Delete
        </button>
      </div>
    </Dialog>
  );
}

/** Text shown as is until clicked; then an input (or textarea) saved on Enter / blur, dropped on Escape. */
export function EditableText(props: {
  value: string;
  placeholder: string;
  multiline?: boolean;
  testid: string;
  onSave: (value: string) => Promise<void>;
}) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(props.value);
  const [busy, setBusy] = useState(false);
  const save = async () => {
    if (busy) return;
    if (draft === props.value) {
      setEditing(false);
      return;
    }
    setBusy(true);
    try {
      await props.onSave(draft);
      setEditing(false);
    } finally {
      setBusy(false);
    }
  };
  if (!editing) {
    return (
      <span
        class={`editable ${props.value ? "" : "placeholder"}`}
        data-testid={props.testid}
        tabIndex={0}
        onClick={() => {
          setDraft(props.value);
          setEditing(true);
        }}
      >
        {props.value || props.placeholder}
      </span>
    );
  }
  const common = {
    value: draft,
    "data-testid": `${props.testid}-input`,
    autoFocus: true,
    disabled: busy,
    onInput: (e: Event) => setDraft((e.currentTarget as HTMLInputElement).value),
    onBlur: () => void save(),
    onKeyDown: (e: KeyboardEvent) => {
      if (e.key === "Escape") setEditing(false);
      if (e.key === "Enter" && (!props.multiline || e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        void save();
      }
    },
  };
  return props.multiline ? <textarea rows={3} {...common} /> : <input type="text" {...common} />;
}

/** Tags as chips with a remove button, and an input that adds one on Enter. */
export function TagEditor(props: { tags: string[]; onChange: (tags: string[]) => Promise<void> }) {
  const [draft, setDraft] = useState("");
  return (
    <span class="tags" data-testid="tag-editor">
      {props.tags.map((t) => (
        <span class="tag" key={t} data-testid="tag">
          {t}
          <button
            class="link"
            aria-label={`remove tag ${t}`}
            onClick={() => void props.onChange(props.tags.filter((x) => x !== t))}
          >
            ×
          </button>
        </span>
      ))}
      <input
        type="text"
        placeholder="add tag"
        data-testid="tag-input"
        value={draft}
        onInput={(e) => setDraft(e.currentTarget.value)}
        onKeyDown={(e) => {
          const tag = draft.trim();
          if (e.key === "Enter" && tag) {
            setDraft("");
            if (!props.tags.includes(tag)) void props.onChange([...props.tags, tag]);
          }
        }}
      />
    </span>
  );
}
