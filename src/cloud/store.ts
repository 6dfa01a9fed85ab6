/**
 * Crash-safe JSON persistence. A write goes to a temporary file in the same directory, is
 * fsynced, renamed over the target, and the directory is fsynced: after a kill at any moment the
 * file holds either the previous or the new content, never a mix. A corrupt file is moved aside
 * (never deleted) and reported, and the caller starts from empty state.
 */
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';

let tmpCounter = 0;

/** Write `data` to `file` atomically (temp file + fsync + rename + directory fsync). */
export async function atomicWriteFile(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  await fsp.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${++tmpCounter}.tmp`);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, 'w', mode);
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, file);
  } catch (err) {
    if (handle) await handle.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch {
    // Some filesystems do not support fsync on directories; the rename is still atomic.
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

export interface LoadResult<T> {
  /** The parsed content, or undefined when there was no file or it was corrupt. */
  data?: T;
  /** Set when the file was corrupt: where it was moved, and why. */
  corrupt?: { movedTo: string; reason: string };
}

/**
 * Read and parse a JSON file. `check` returns an error string when the parsed value is not
 * what the caller stores. Unreadable or unparsable files are renamed to `<file>.corrupt-<time>`.
 * Leftover temp files from a write that was interrupted are removed.
 */
export function loadJsonFile<T>(file: string, check: (value: unknown) => string | undefined): LoadResult<T> {
  removeStaleTemps(file);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    return moveAside(file, `cannot read: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return moveAside(file, `not valid JSON (${(err as Error).message})`);
  }
  const problem = check(value);
  if (problem) return moveAside(file, problem);
  return { data: value as T };
}

function moveAside<T>(file: string, reason: string): LoadResult<T> {
  const movedTo = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  try {
    fs.renameSync(file, movedTo);
  } catch {
    // If even the rename fails we still start empty; the reason says what happened.
  }
  return { corrupt: { movedTo, reason } };
}

function removeStaleTemps(file: string): void {
  const dir = path.dirname(file);
  const prefix = `.${path.basename(file)}.`;
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    if (name.startsWith(prefix) && name.endsWith('.tmp')) {
      try {
        fs.rmSync(path.join(dir, name), { force: true });
      } catch {
        // best effort
      }
    }
  }
}

/**
 * Coalesces saves: `schedule()` writes after `delayMs`, `flush()` writes now. Only one write runs
 * at a time; a change during a write causes one more write after it. A failed write (disk full)
 * keeps the previous file, reports the error, and is retried on the next change or flush.
 */
export class SaveScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;

  constructor(
    private readonly write: () => Promise<void>,
    private readonly onError: (err: Error) => void,
    private readonly delayMs = 1000,
  ) {}

  /** Mark the data changed; it is written within `delayMs`. */
  schedule(): void {
    this.dirty = true;
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, this.delayMs);
    this.timer.unref?.();
  }

  /** Write now if anything changed (or `force`), and wait for it. Never rejects. */
  async flush(force = false): Promise<void> {
    if (force) this.dirty = true;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.running) await this.running;
    if (this.dirty) await this.run();
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.dirty = false;
    this.running = this.write().catch((err: Error) => {
      this.dirty = true;
      this.onError(err);
    });
    try {
      await this.running;
    } finally {
      this.running = undefined;
    }
    if (this.dirty && !this.timer) this.schedule();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
