/**
 * Host metrics for the `system` channel: CPU use since the previous sample (all cores), memory
 * in use, disk use of the file system that holds Node-RED's user directory, and the number of
 * open telemetry connections. Percentages with one decimal.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { SystemMetric } from './metrics';

interface CpuTimes {
  idle: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  let idle = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
  }
  return { idle, total };
}

const round1 = (n: number) => Math.round(n * 10) / 10;

export class SystemSampler {
  private last: CpuTimes = cpuTimes();
  private cache: { at: number; values: Record<SystemMetric, number> } | undefined;

  constructor(private readonly diskPath: string, private readonly connections: () => number) {}

  /** One sample; samples asked for in the same tick are the same object. */
  sample(now = Date.now()): Record<SystemMetric, number> {
    if (this.cache && now - this.cache.at < 500) return this.cache.values;
    const cur = cpuTimes();
    const dTotal = cur.total - this.last.total;
    const dIdle = cur.idle - this.last.idle;
    this.last = cur;
    const cpu = dTotal > 0 ? (1 - dIdle / dTotal) * 100 : Math.min(100, (os.loadavg()[0] / Math.max(1, os.cpus().length)) * 100);
    const total = os.totalmem();
    const memory = total > 0 ? (1 - os.freemem() / total) * 100 : 0;
    const values: Record<SystemMetric, number> = {
      cpu_usage: round1(Math.max(0, Math.min(100, cpu))),
      memory_usage: round1(memory),
      disk_usage: round1(this.disk()),
      active_connections: this.connections(),
    };
    this.cache = { at: now, values };
    return values;
  }

  private disk(): number {
    try {
      const s = fs.statfsSync(this.diskPath);
      const used = s.blocks - s.bfree;
      const usable = used + s.bavail;
      return usable > 0 ? (used / usable) * 100 : 0;
    } catch {
      return 0;
    }
  }
}
