/**
 * Over-the-air updates from the user's own server, tracked from start to finish:
 * sent → acked (or the device disconnected without an ack, as some firmware does) →
 * downloading (seen by the firmware server) → success when the device comes back and reports
 * the new version; failure on ack `error:404` (after one retry with a throttled download), a
 * download that breaks off, the device coming back with its old version, or a timeout.
 */
import { EventEmitter } from 'node:events';
import { CoolkitError, ErrorCode } from '../../protocol/errors';
import type { CoolkitCloud, DeviceEvent } from '../server';
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
  maxConcurrent: number;
  /** Whole update, from send to the device back with the new version. */
  timeoutMs: number;
  ackTimeoutMs: number;
  /** Bytes per second of the fallback download. */
  slowThrottle: number;
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
  retried: boolean;
  downloadSeen: boolean;
  timer: NodeJS.Timeout;
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

  /** Compare a device's firmware with the newest image for its model. */
  check(deviceid: string): CheckResult {
    const record = this.cloud.device(deviceid);
    if (!record) throw new CoolkitError(ErrorCode.NOT_FOUND, `device ${deviceid} is unknown to this server`, deviceid);
    const current = String(record.params.fwVersion ?? record.romVersion ?? '');
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
   * Start an update; resolves with the final progress (success or failed). Refusals (offline,
   * unknown version, model mismatch, already updating, too many at once) reject at once,
   * before anything is sent.
   */
  update(deviceid: string, version?: string, model?: string): Promise<OtaProgress> {
    const record = this.cloud.device(deviceid);
    if (!record) return Promise.reject(new CoolkitError(ErrorCode.NOT_FOUND, `device ${deviceid} is unknown to this server`, deviceid));
    const session = this.cloud.session(deviceid);
    if (!session?.record) return Promise.reject(new CoolkitError(ErrorCode.OFFLINE, `device ${deviceid} is offline`, deviceid));
    if (model && record.model && model !== record.model) {
      return Promise.reject(new CoolkitError(ErrorCode.BAD_REQUEST, `firmware for model ${model} cannot go to device ${deviceid}, which is a ${record.model} (the device would drop the connection)`, deviceid));
    }
    const entry = version ? this.store.get(record.model, version) : this.store.latest(record.model);
    if (!entry) {
      const other = version ? this.store.list().find((e) => e.version === version) : undefined;
      const why = other
        ? `firmware ${version} is for model ${other.model}, not ${record.model || 'this device'}: refused (the device would drop the connection)`
        : `no firmware ${version ? `version ${version} ` : ''}for model ${record.model || '(unknown model)'} in the store`;
      return Promise.reject(new CoolkitError(other ? ErrorCode.BAD_REQUEST : ErrorCode.NOT_FOUND, why, deviceid));
    }
    if (this.jobs.has(deviceid)) return Promise.reject(new CoolkitError(409, `device ${deviceid} is already updating`, deviceid));
    if (this.jobs.size >= this.options.maxConcurrent) {
      return Promise.reject(new CoolkitError(ErrorCode.TOO_MANY_REQUESTS, `${this.jobs.size} updates are running (limit ${this.options.maxConcurrent}); try again when one finishes`, deviceid));
    }
    return new Promise((resolve) => {
      const progress: OtaProgress = { deviceid, model: record.model, fromVersion: String(record.params.fwVersion ?? record.romVersion ?? ''), version: entry.version, state: 'sent', at: '' };
      const job: Job = {
        progress,
        entry,
        grant: this.server.grant(deviceid, [entry.user1, entry.user2]),
        retried: false,
        downloadSeen: false,
        timer: setTimeout(() => this.finish(job, 'failed', `timeout: the device did not come back with ${entry.version} within ${Math.round(this.options.timeoutMs / 1000)} s`), this.options.timeoutMs),
        resolve,
      };
      this.jobs.set(deviceid, job);
      this.send(job);
    });
  }

  private send(job: Job): void {
    const { deviceid } = job.progress;
    const session = this.cloud.session(deviceid);
    const record = session?.record;
    if (!session || !record) {
      this.finish(job, 'failed', 'the device went offline before the update could be sent');
      return;
    }
    const base = `http://${this.options.advertiseHost}:${this.server.listeningPort}`;
    const message = buildUpgradeMessage(deviceid, record.apikey, this.cloud.nextSequence(), base, job.grant, job.entry);
    this.set(job, job.retried ? 'retrying' : 'sent');
    session.request(message, this.options.ackTimeoutMs).then(
      () => this.set(job, 'acked'),
      (err: CoolkitError) => {
        if (!this.jobs.has(deviceid) || this.jobs.get(deviceid) !== job) return;
        if (err.code === ErrorCode.NOT_FOUND) this.downloadFailed(job, 'the device reported error 404: it could not download the image');
        else if (err.code === ErrorCode.OFFLINE) this.set(job, 'disconnected', 'the device dropped the connection without an ack (firmware that downloads at once)');
        // 504: some firmware never acks; the download or the reboot tells the rest.
      },
    );
  }

  /** Retry once with a throttled download, as devices that fail a fast download often succeed slowly. */
  private downloadFailed(job: Job, reason: string): void {
    if (!job.retried && this.cloud.session(job.progress.deviceid)?.record) {
      job.retried = true;
      this.server.revoke(job.grant.token);
      job.grant = this.server.grant(job.progress.deviceid, [job.entry.user1, job.entry.user2], { throttle: this.options.slowThrottle });
      job.progress.reason = `${reason}; retrying with a slow download`;
      this.send(job);
      return;
    }
    this.finish(job, 'failed', reason);
  }

  private download(kind: 'start' | 'complete' | 'aborted', ev: DownloadEvent): void {
    const job = this.jobs.get(ev.deviceid);
    if (!job || job.grant.token !== ev.token) return;
    if (kind === 'start' && !job.downloadSeen) {
      job.downloadSeen = true;
      this.set(job, 'downloading', `${ev.name} from ${ev.remote}`);
    } else if (kind === 'complete') {
      this.set(job, 'downloaded', `${ev.name}, ${ev.bytes} bytes`);
    } else if (kind === 'aborted') {
      job.downloadSeen = false;
      this.downloadFailed(job, `the download of ${ev.name} broke off after ${ev.bytes} of ${ev.size} bytes`);
    }
  }

  /** The device registered again: after an update it must run the new version. */
  private deviceBack(ev: DeviceEvent): void {
    const job = this.jobs.get(ev.deviceid);
    if (!job || job.progress.state === 'sent') return;
    const version = String(ev.state.fwVersion ?? ev.device.romVersion ?? '');
    if (ev.device.romVersion === job.entry.version) this.finish(job, 'success');
    else if (job.progress.state === 'downloaded' || job.progress.state === 'disconnected' || job.progress.state === 'downloading') {
      // Wait for the report: older firmware puts the version only in fwVersion.
      job.progress.reason = `back online with firmware ${version || '?'}; waiting for its report`;
    }
  }

  private deviceReport(ev: DeviceEvent): void {
    const job = this.jobs.get(ev.deviceid);
    if (!job) return;
    const reported = ev.params.fwVersion;
    const onlyDevice = ev.params.only_device as { ota?: unknown } | undefined;
    if (reported === job.entry.version || onlyDevice?.ota === 'success') {
      this.finish(job, 'success');
    } else if (typeof reported === 'string' && job.progress.reason?.startsWith('back online')) {
      this.finish(job, 'failed', `the device came back with firmware ${reported}, not ${job.entry.version}: the download or the flash failed`);
    }
  }

  private set(job: Job, state: OtaState, reason?: string): void {
    if (this.jobs.get(job.progress.deviceid) !== job) return;
    job.progress = { ...job.progress, state, at: new Date().toISOString() };
    if (reason !== undefined) job.progress.reason = reason;
    else delete job.progress.reason;
    this.emit('progress', { ...job.progress });
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
