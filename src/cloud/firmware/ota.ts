/**
 * Over-the-air updates from the user's own server, tracked from start to finish:
 * sent → acked (or the device disconnected without an ack, as some firmware does) →
 * downloading (seen by the firmware server) → downloaded → success when the device comes back
 * on a new connection and reports the new version; failure on ack `error:404` or a download
 * that breaks off (each after one retry with a throttled download), the device coming back with
 * its old version, or a timeout.
 */
import { EventEmitter } from 'node:events';
import { CoolkitError, ErrorCode } from '../../protocol/errors';
import type { CoolkitCloud, DeviceEvent } from '../server';
import type { DeviceSession } from '../device-session';
import type { DownloadEvent, FirmwareServer, Grant } from './server';
import { compareVersions, type FirmwareEntry, type FirmwareStore } from './store';

export type OtaState = 'sent' | 'acked' | 'disconnected' | 'retrying' | 'downloading' | 'downloaded' | 'success' | 'failed';

export interface OtaProgress {
  deviceid: string;
  model: string;
  fromVersion: string;
  version: string;
  state: OtaState;
  reason?: string;
  at: string;
}

export interface OtaOptions {
  /** Host put in download URLs (the address devices reach this machine on). */
  advertiseHost: string;
  /** Default limit of updates running at once (an update may pass its own). */
  maxConcurrent: number;
  /** Default time for a whole update, from send to the device back with the new version. */
  timeoutMs: number;
  ackTimeoutMs: number;
  /** Bytes per second of the fallback download. */
  slowThrottle: number;
}

export interface UpdateOptions {
  /** Default: the newest image for the device's model. */
  version?: string;
  /** The model the caller expects; refused when the device is another model. */
  model?: string;
  timeoutMs?: number;
  maxConcurrent?: number;
  /** Every state change of this update (also emitted as the manager's `progress` event). */
  onProgress?: (p: OtaProgress) => void;
}

export interface CheckResult {
  deviceid: string;
  model: string;
  current: string;
  latest: string | null;
  updateAvailable: boolean;
}

interface Job {
  progress: OtaProgress;
  entry: FirmwareEntry;
  grant: Grant;
  timeoutMs: number;
  /** The connection the current upgrade went out on; success needs the device back on another. */
  session: DeviceSession | undefined;
  /** Bumped by every send, so a late answer to an earlier upgrade message is ignored. */
  attempt: number;
  retried: boolean;
  downloadSeen: boolean;
  downloaded: boolean;
  /** A download failed while the device was offline: retry when it is back. */
  retryWhenBack: string | undefined;
  timer: NodeJS.Timeout;
  onProgress: ((p: OtaProgress) => void) | undefined;
  resolve(p: OtaProgress): void;
}

/** The upgrade message exactly in the shape of the 2017 capture (seed 001). */
export function buildUpgradeMessage(deviceid: string, apikey: string, sequence: string, baseUrl: string, grant: Grant, entry: FirmwareEntry) {
  return {
    action: 'upgrade',
    deviceid,
    apikey,
    userAgent: 'app',
    sequence,
    ts: 0,
    params: {
      binList: [entry.user1, entry.user2].map((img) => ({ downloadUrl: `${baseUrl}/ota/rom/${grant.token}/${img.name}`, digest: img.sha256, name: img.name })),
      model: entry.model,
      version: entry.version,
    },
  };
}

function currentVersion(record: { params: Record<string, unknown>; romVersion: string }): string {
  return String(record.params.fwVersion ?? record.romVersion ?? '');
}

export class OtaManager extends EventEmitter {
  private readonly jobs = new Map<string, Job>();
  private readonly onOnline = (ev: DeviceEvent) => this.deviceBack(ev);
  private readonly onUpdate = (ev: DeviceEvent) => this.deviceReport(ev);
  private readonly onDownload = (kind: 'start' | 'complete' | 'aborted') => (ev: DownloadEvent) => this.download(kind, ev);
  private readonly downloadListeners: Array<[string, (ev: DownloadEvent) => void]>;

  constructor(
    private readonly cloud: CoolkitCloud,
    private readonly store: FirmwareStore,
    private readonly server: FirmwareServer,
    private readonly options: OtaOptions,
  ) {
    super();
    cloud.on('online', this.onOnline);
    cloud.on('update', this.onUpdate);
    this.downloadListeners = [
      ['download-start', this.onDownload('start')],
      ['download-complete', this.onDownload('complete')],
      ['download-aborted', this.onDownload('aborted')],
    ];
    for (const [event, fn] of this.downloadListeners) server.on(event, fn);
  }

  get running(): number {
    return this.jobs.size;
  }

  isUpdating(deviceid: string): boolean {
    return this.jobs.has(deviceid);
  }

  /** The progress of every running update. */
  active(): OtaProgress[] {
    return [...this.jobs.values()].map((j) => ({ ...j.progress }));
  }

  /** True while a running update serves this image (it must not be removed). */
  isServing(model: string, version: string): boolean {
    for (const j of this.jobs.values()) if (j.entry.model === model && j.entry.version === version) return true;
    return false;
  }

  /** Compare a device's firmware with the newest image for its model. */
  check(deviceid: string): CheckResult {
    const record = this.cloud.device(deviceid);
    if (!record) throw new CoolkitError(ErrorCode.NOT_FOUND, `device ${deviceid} is unknown to this server`, deviceid);
    const current = currentVersion(record);
    const latest = record.model ? this.store.latest(record.model) : undefined;
    return {
      deviceid,
      model: record.model,
      current,
      latest: latest?.version ?? null,
      updateAvailable: latest !== undefined && (current === '' || compareVersions(latest.version, current) > 0),
    };
  }

  /**
   * Start an update; resolves with the final progress (success or failed). Refusals (unknown,
   * offline, unknown version, model mismatch, already updating, too many at once) reject at
   * once, before anything is sent.
   */
  update(deviceid: string, options: UpdateOptions = {}): Promise<OtaProgress> {
    const { version, model } = options;
    const record = this.cloud.device(deviceid);
    if (!record) return Promise.reject(new CoolkitError(ErrorCode.NOT_FOUND, `device ${deviceid} is unknown to this server`, deviceid));
    if (this.jobs.has(deviceid)) return Promise.reject(new CoolkitError(409, `device ${deviceid} is already updating`, deviceid));
    const session = this.cloud.session(deviceid);
    if (!session?.record) return Promise.reject(new CoolkitError(ErrorCode.OFFLINE, `device ${deviceid} is offline`, deviceid));
    if (model && record.model && model !== record.model) {
      return Promise.reject(new CoolkitError(ErrorCode.BAD_REQUEST, `firmware for model ${model} cannot go to device ${deviceid}, which is a ${record.model} (the device would drop the connection)`, deviceid));
    }
    if (!record.model) {
      return Promise.reject(new CoolkitError(ErrorCode.BAD_REQUEST, `device ${deviceid} did not report its model; the upgrade must name it, so it cannot be updated`, deviceid));
    }
    const entry = version ? this.store.get(record.model, version) : this.store.latest(record.model);
    if (!entry) {
      const other = version ? this.store.list().find((e) => e.version === version) : undefined;
      const why = other
        ? `firmware ${version} is for model ${other.model}, not ${record.model}: refused (the device would drop the connection)`
        : `no firmware ${version ? `version ${version} ` : ''}for model ${record.model} in the store`;
      return Promise.reject(new CoolkitError(other ? ErrorCode.BAD_REQUEST : ErrorCode.NOT_FOUND, why, deviceid));
    }
    const limit = options.maxConcurrent ?? this.options.maxConcurrent;
    if (this.jobs.size >= limit) {
      return Promise.reject(new CoolkitError(ErrorCode.TOO_MANY_REQUESTS, `${this.jobs.size} updates are running (limit ${limit}); try again when one finishes`, deviceid));
    }
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    return new Promise((resolve) => {
      const progress: OtaProgress = { deviceid, model: record.model, fromVersion: currentVersion(record), version: entry.version, state: 'sent', at: '' };
      const job: Job = {
        progress,
        entry,
        grant: this.server.grant(deviceid, [entry.user1, entry.user2], { ttlMs: timeoutMs }),
        timeoutMs,
        session: undefined,
        attempt: 0,
        retried: false,
        downloadSeen: false,
        downloaded: false,
        retryWhenBack: undefined,
        timer: setTimeout(() => this.finish(job, 'failed', `timeout: the device did not come back with ${entry.version} within ${Math.round(timeoutMs / 1000)} s`), timeoutMs),
        onProgress: options.onProgress,
        resolve,
      };
      this.jobs.set(deviceid, job);
      this.send(job, undefined);
    });
  }

  private send(job: Job, reason: string | undefined): void {
    const { deviceid } = job.progress;
    const session = this.cloud.session(deviceid);
    const record = session?.record;
    if (!session || !record) {
      this.finish(job, 'failed', 'the device went offline before the update could be sent');
      return;
    }
    const attempt = ++job.attempt;
    job.session = session;
    job.downloadSeen = false;
    job.downloaded = false;
    const base = `http://${this.options.advertiseHost}:${this.server.listeningPort}`;
    const message = buildUpgradeMessage(deviceid, record.apikey, this.cloud.nextSequence(), base, job.grant, job.entry);
    this.set(job, job.retried ? 'retrying' : 'sent', reason);
    const current = () => this.jobs.get(deviceid) === job && job.attempt === attempt;
    session.request(message, this.options.ackTimeoutMs).then(
      () => {
        if (current() && (job.progress.state === 'sent' || job.progress.state === 'retrying')) this.set(job, 'acked');
      },
      (err: CoolkitError) => {
        if (!current()) return;
        if (err.code === ErrorCode.NOT_FOUND) this.downloadFailed(job, 'the device answered error 404: it could not download the image');
        else if (err.code === ErrorCode.OFFLINE) {
          if (job.progress.state === 'sent' || job.progress.state === 'retrying') this.set(job, 'disconnected', 'the device dropped the connection without an ack (firmware that downloads at once)');
        } else if (err.code !== ErrorCode.TIMEOUT) {
          this.finish(job, 'failed', `the device refused the upgrade (error ${err.code})`);
        }
        // 504: some firmware never acks; the download or the reboot tells the rest.
      },
    );
  }

  /** Retry once with a throttled download, as devices that fail a fast download often succeed slowly. */
  private downloadFailed(job: Job, reason: string): void {
    if (job.retried) {
      this.finish(job, 'failed', reason);
      return;
    }
    job.retried = true;
    this.server.revoke(job.grant.token);
    job.grant = this.server.grant(job.progress.deviceid, [job.entry.user1, job.entry.user2], { throttle: this.options.slowThrottle, ttlMs: job.timeoutMs });
    if (this.cloud.session(job.progress.deviceid)?.record) this.send(job, `${reason}; retrying with a slow download`);
    else job.retryWhenBack = reason; // sent when the device is back
  }

  private download(kind: 'start' | 'complete' | 'aborted', ev: DownloadEvent): void {
    const job = this.jobs.get(ev.deviceid);
    if (!job || job.grant.token !== ev.token) return;
    if (kind === 'start') {
      if (!job.downloadSeen) {
        job.downloadSeen = true;
        this.set(job, 'downloading', `${ev.name} from ${ev.remote}`);
      }
    } else if (kind === 'complete') {
      if (ev.toEnd && !job.downloaded) {
        job.downloaded = true;
        this.set(job, 'downloaded', `${ev.name}, ${ev.total} bytes`);
      }
    } else {
      this.downloadFailed(job, `the download of ${ev.name} broke off after ${ev.bytes} of ${ev.size} bytes`);
    }
  }

  /** True when the device is on another connection than the one the upgrade went out on: it rebooted (or reconnected). */
  private cameBack(job: Job): boolean {
    const session = this.cloud.session(job.progress.deviceid);
    return session !== undefined && session !== job.session;
  }

  /** The device registered again: after an update it must run the new version. */
  private deviceBack(ev: DeviceEvent): void {
    const job = this.jobs.get(ev.deviceid);
    if (!job || !this.cameBack(job)) return;
    if (ev.device.romVersion === job.entry.version) this.finish(job, 'success');
    // Otherwise wait for the report: older firmware puts the version only in fwVersion.
  }

  private deviceReport(ev: DeviceEvent): void {
    const job = this.jobs.get(ev.deviceid);
    if (!job) return;
    const reported = ev.params.fwVersion;
    const onlyDevice = ev.params.only_device as { ota?: unknown } | undefined;
    if (onlyDevice?.ota === 'success') {
      this.finish(job, 'success');
      return;
    }
    if (!this.cameBack(job) || reported === undefined) return;
    if (String(reported) === job.entry.version) {
      this.finish(job, 'success');
    } else if (job.retryWhenBack !== undefined) {
      const reason = job.retryWhenBack;
      job.retryWhenBack = undefined;
      this.send(job, `${reason}; retrying with a slow download`);
    } else if (job.downloaded || job.downloadSeen) {
      this.finish(job, 'failed', `the device rebooted with firmware ${String(reported)}, not ${job.entry.version}: it rejected the image (sha256 mismatch, bad image or flash error)`);
    } else {
      this.finish(job, 'failed', `the device reconnected with firmware ${String(reported)} without downloading ${job.entry.version}`);
    }
  }

  private set(job: Job, state: OtaState, reason?: string): void {
    if (this.jobs.get(job.progress.deviceid) !== job) return;
    job.progress = { ...job.progress, state, at: new Date().toISOString() };
    if (reason !== undefined) job.progress.reason = reason;
    else delete job.progress.reason;
    const p = { ...job.progress };
    if (job.onProgress) {
      try {
        job.onProgress({ ...p });
      } catch {
        // a listener's bug must not stop the update's tracking
      }
    }
    this.emit('progress', p);
  }

  private finish(job: Job, state: 'success' | 'failed', reason?: string): void {
    if (this.jobs.get(job.progress.deviceid) !== job) return;
    this.set(job, state, reason);
    clearTimeout(job.timer);
    this.server.revoke(job.grant.token);
    this.jobs.delete(job.progress.deviceid);
    job.resolve({ ...job.progress });
  }

  close(): void {
    this.cloud.off('online', this.onOnline);
    this.cloud.off('update', this.onUpdate);
    for (const [event, fn] of this.downloadListeners) this.server.off(event, fn);
    for (const job of [...this.jobs.values()]) this.finish(job, 'failed', 'the OTA node was stopped');
  }
}
