/**
 * TLS for the device listener. Stock Sonoff firmware uses old ESP8266 TLS stacks: some need
 * TLS 1.0/1.1 and ciphers that OpenSSL 3 disables by default, hence the `legacy` profile
 * (`minVersion: 'TLSv1'`, `DEFAULT:@SECLEVEL=0`). The `auto` mode generates an RSA-2048
 * self-signed certificate once and keeps it (key file mode 0600) in the Node-RED user directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { generate } from 'selfsigned';
import { atomicWriteFile } from './store';

export interface KeyPair {
  cert: string;
  key: string;
}

/** Load the certificate pair in `dir`, or generate and store one. */
export async function ensureSelfSignedCertificate(dir: string, altIps: string[] = []): Promise<KeyPair> {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (fs.existsSync(certFile) && fs.existsSync(keyFile)) {
    return { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8') };
  }
  const now = new Date();
  const notAfter = new Date(now.getTime());
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + 20);
  const ips = [...new Set(['127.0.0.1', ...altIps.filter((ip) => /^\d+\.\d+\.\d+\.\d+$/.test(ip))])];
  const pems = await generate([{ name: 'commonName', value: 'iotgo.iteadstudio.com' }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 24 * 3600 * 1000),
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'iotgo.iteadstudio.com' },
          { type: 2, value: 'localhost' },
          ...ips.map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
  });
  // Key first: a cert without its key would be useless on the next start.
  await atomicWriteFile(keyFile, pems.private, 0o600);
  await atomicWriteFile(certFile, pems.cert, 0o644);
  return { cert: pems.cert, key: pems.private };
}

export function loadKeyPairFiles(certFile: string, keyFile: string): KeyPair {
  return { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8') };
}

/** Server TLS options; `legacy` admits TLS 1.0 and weak ciphers for old device firmware. */
export function serverTlsOptions(pair: KeyPair, legacy: boolean): TlsOptions & SecureContextOptions {
  const options: TlsOptions & SecureContextOptions = { cert: pair.cert, key: pair.key, handshakeTimeout: 15_000 }; // a socket that never completes the handshake is cut (Node's default: 120 s)
  if (legacy) {
    options.minVersion = 'TLSv1';
    options.ciphers = 'DEFAULT:@SECLEVEL=0';
  }
  return options;
}
