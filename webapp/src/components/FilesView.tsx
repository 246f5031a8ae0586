// The Files tab: the run's files with size and time, a preview of text files (the first 256 KiB,
// fetched inline as text/plain and shown as text), and a download link for each.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { formatBytes, formatTime } from "../format";
import type { RunFile } from "../types";
import { errorText } from "./common";

export function FilesView(props: { entity: string; project: string; id: string; tick: number }) {
  const { entity, project, id } = props;
  const [files, setFiles] = useState<RunFile[] | null>(null);
  const [preview, setPreview] = useState<{ name: string; text: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api
      .files(entity, project, id)
      .then((f) => setFiles(f.files))
      .catch((exc) => setError(errorText(exc)));
  }, [entity, project, id, props.tick]);
  const open = async (f: RunFile) => {
    try {
      setPreview({ name: f.name, text: await api.fileText(entity, project, id, f.name) });
    } catch (exc) {
      setError(errorText(exc));
    }
  };
  return (
    <div data-testid="files">
      {error && <p class="error">{error}</p>}
      {files && files.length === 0 && <p class="muted">No files.</p>}
      {files && files.length > 0 && (
        <table class="grid">
          <thead>
            <tr>
              <th>Name</th>
              <th>Size</th>
              <th>Updated</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {files.map((f) => (
              <tr key={f.name} data-file={f.name}>
                <td>
                  {f.text ? (
                    <button class="link" onClick={() => void open(f)}>
                      {f.name}
                    </button>
                  ) : (
                    f.name
                  )}
                </td>
                <td>{formatBytes(f.size)}</td>
                <td>{formatTime(f.updated_at)}</td>
                <td>
                  <a href={api.fileUrl(entity, project, id, f.name)} download={f.name.split("/").pop()}>
                    download
                  </a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {preview && (
        <div class="preview" data-testid="file-preview">
          <h3>{preview.name}</h3>
          <pre>{preview.text}</pre>
        </div>
      )}
    </div>
  );
}
