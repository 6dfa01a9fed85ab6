/**
 * Over-the-air update as stock Sonoff firmware does it (coolkit-protocol.md §3.10): the server's
 * `upgrade` names a user1/user2 image pair with sha256 digests; the device downloads the image
 * for its inactive partition over plain HTTP, checks the digest, reboots into it and reports the
 * new `fwVersion`. This file holds the options, the image choice and the HTTP download; the
 * connection side (ack, reboot, reconnect) lives in ./device.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import { isPlainObject } from './state';

/** The two Espressif OTA partitions. */
export type OtaImage = 'user1' | 'user2';

/**
 * How the simulated device fails an update:
 * - `download`: acks, then breaks the download off after the first chunk and stays on its firmware;
 * - `digest`: acks, downloads, but the image's sha256 does not match (a corrupted transfer): it
 *   refuses to boot the image and reconnects with its old version after the reboot delay;
 * - `ack404`: acks with `error: 404` and does not download;
 * - `no-ack`: never acks: drops the connection at once, downloads, and reconnects with the new
 *   version (firmware that "may not respond but rather disconnect and download directly", CK-v2).
 *   Not a failure of the update, a different way to succeed.
 */
export type OtaFailure = 'download' | 'digest' | 'ack404' | 'no-ack';

export interface SimOtaOptions {
  /** Default: none, the update succeeds. */
  fail?: OtaFailure;
  /** Apply `fail` to this many `upgrade` messages, then behave normally. Default: all of them. */
  failCount?: number;
  /** Force the image to fetch; default the inactive partition (user2 while running user1, and so on after each update). */
  image?: OtaImage;
  /** Time between the end of the download and the reconnect (flash + reboot). Default 200 ms. */
  rebootDelayMs?: number;
  /** Give up a download that takes longer. Default 120 000 ms. */
  downloadTimeoutMs?: number;
}

export const DEFAULT_REBOOT_DELAY_MS = 200;
export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 120_000;
/** Espressif v2 application images start with this byte; the stock bootloader refuses anything else. */
export const ESP_IMAGE_MAGIC = 0xea;

/** What an OTA run goes through; emitted as the device's `ota` event. */
export type SimOtaPhase =
  | 'received' // an upgrade arrived (acked or not, see `acked`)
  | 'downloading'
  | 'downloaded'
  | 'rebooting' // flashing and rebooting into `version` (or back into the old one after a bad image)
  | 'updated' // reconnected and registered with the new version
  | 'failed'; // the update did not take; `reason` says why

export interface SimOtaEvent {
  phase: SimOtaPhase;
  /** The version the upgrade offered. */
  version: string;
  image?: OtaImage;
  url?: string;
  bytes?: number;
  reason?: string;
}

export interface BinListEntry {
  downloadUrl: string;
  digest: string;
  name: string;
}

/** The parts of an `upgrade` message the device acts on; a reason string when it is unusable. */
export function parseUpgrade(params: unknown): { binList: BinListEntry[]; model: string; version: string } | string {
  if (!isPlainObject(params)) return 'upgrade without params';
  const list = params.binList;
  if (!Array.isArray(list) || list.length === 0) return 'upgrade without binList';
  const binList: BinListEntry[] = [];
  for (const item of list) {
    if (!isPlainObject(item) || typeof item.downloadUrl !== 'string' || typeof item.digest !== 'string' || typeof item.name !== 'string') {
      return 'binList entries need downloadUrl, digest and name strings';
    }
    binList.push({ downloadUrl: item.downloadUrl, digest: item.digest, name: item.name });
  }
  return { binList, model: typeof params.model === 'string' ? params.model : '', version: typeof params.version === 'string' ? params.version : '' };
}

/** The entry for an image: `name` "user2.bin" (or any name starting with user2). */
export function pickImage(binList: BinListEntry[], image: OtaImage): BinListEntry | undefined {
  return binList.find((b) => b.name.toLowerCase() === `${image}.bin`) ?? binList.find((b) => b.name.toLowerCase().startsWith(image));
}

export class DownloadError extends Error {
  constructor(
    message: string,
    readonly bytes: number,
  ) {
    super(message);
    this.name = 'DownloadError';
  }
}

/**
 * GET an image over plain HTTP (the ESP8266 OTA client speaks nothing else). With
 * `abortAfterFirstChunk` the transfer is broken off as soon as data arrives, the way a device
 * losing Wi-Fi mid-download would. Resolves with the body; rejects with DownloadError.
 */
export function downloadImage(url: string, options: { timeoutMs: number; signal?: AbortSignal; abortAfterFirstChunk?: boolean; onStart?: () => void }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      reject(new DownloadError(`not a URL: ${url}`, 0));
      return;
    }
    if (parsed.protocol !== 'http:') {
      reject(new DownloadError(`the OTA client speaks plain HTTP only, not ${parsed.protocol}`, 0));
      return;
    }
    let bytes = 0;
    let settled = false;
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(new DownloadError(message, bytes));
    };
    const req = http.get(parsed, { agent: false, timeout: options.timeoutMs, signal: options.signal }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        fail(`HTTP ${res.statusCode}`);
        return;
      }
      options.onStart?.();
      const expected = Number(res.headers['content-length']);
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        chunks.push(chunk);
        if (options.abortAfterFirstChunk) fail(`download broken off after ${bytes} bytes`);
      });
      res.on('end', () => {
        if (settled) return;
        if (Number.isFinite(expected) && bytes !== expected) {
          fail(`got ${bytes} of ${expected} bytes`);
          return;
        }
        settled = true;
        resolve(Buffer.concat(chunks));
      });
      res.on('error', (err) => fail(err.message));
      res.on('aborted', () => fail(`connection closed after ${bytes} bytes`));
    });
    req.on('timeout', () => fail(`no complete download within ${options.timeoutMs} ms`));
    req.on('error', (err) => fail(err.message));
  });
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
