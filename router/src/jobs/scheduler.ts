import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

export type JobFn = () => Promise<unknown>;

/**
 * Repeatable jobs. With several replicas (BullMQ) each run happens on exactly one of them; the
 * in-process scheduler runs them locally.
 */
export interface Scheduler {
  /** Registers a job run every `everyMs`. Call before `start`. */
  every(name: string, everyMs: number, fn: JobFn): void;
  /** Runs one job now (tests, admin); resolves with its result. */
  runNow(name: string): Promise<unknown>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** In-process timers; a job never overlaps itself. */
export function createMemoryScheduler(options: { log: Logger }): Scheduler {
  const jobs = new Map<string, { everyMs: number; fn: JobFn; running?: Promise<unknown> }>();
  const timers: NodeJS.Timeout[] = [];
  const run = async (name: string) => {
    const job = jobs.get(name);
    if (!job) throw new Error(`no job named ${name}`);
    if (job.running) return await job.running;
    job.running = job.fn().finally(() => {
      job.running = undefined;
    });
    return await job.running;
  };
  return {
    every(name, everyMs, fn) {
      jobs.set(name, { everyMs, fn });
    },
    runNow: run,
    async start() {
      for (const [name, job] of jobs) {
        const t = setInterval(() => {
          run(name).catch((err) => options.log.warn({ err, job: name }, 'job failed'));
        }, job.everyMs);
        t.unref();
        timers.push(t);
      }
    },
    async close() {
      for (const t of timers) clearInterval(t);
      await Promise.allSettled([...jobs.values()].map((j) => j.running));
    },
  };
}

/**
 * BullMQ job schedulers on one queue; a worker on every replica, each run on one of them. BullMQ
 * gets its own connections made from `redis` (`duplicate()`: same address, credentials and TLS),
 * with `maxRetriesPerRequest: null` as its blocking worker connection requires; `close` ends them.
 * The schedulers are upserted at `start` and again after every reconnect (a restarted Redis may
 * have lost them).
 *
 * @example
 * const scheduler = createBullScheduler({ redis, prefix: 'preview:', log });
 */
export function createBullScheduler(options: { redis: Redis; prefix: string; log: Logger }): Scheduler {
  const connections: Redis[] = [];
  const connection = (): Redis => {
    const c = options.redis.duplicate({ maxRetriesPerRequest: null });
    connections.push(c);
    return c;
  };
  const prefix = `${options.prefix}bull`;
  const queueName = 'router-jobs';
  const jobs = new Map<string, { everyMs: number; fn: JobFn }>();
  let queue: Queue | undefined;
  let worker: Worker | undefined;
  return {
    every(name, everyMs, fn) {
      jobs.set(name, { everyMs, fn });
    },
    async runNow(name) {
      const job = jobs.get(name);
      if (!job) throw new Error(`no job named ${name}`);
      return await job.fn();
    },
    async start() {
      const queueConnection = connection();
      const q = new Queue(queueName, { connection: queueConnection, prefix });
      queue = q;
      const schedule = async () => {
        for (const [name, job] of jobs)
          await q.upsertJobScheduler(
            name,
            { every: job.everyMs },
            { name, opts: { removeOnComplete: 100, removeOnFail: 100 } },
          );
      };
      await schedule();
      // A Redis that restarted without its data (no persistence, a failover to an empty replica) has
      // lost the schedulers, and nothing would run again: every replica puts them back whenever its
      // connection is ready again (the upsert is repeat-safe).
      queueConnection.on('ready', () => {
        schedule().catch((err: unknown) =>
          options.log.warn({ err }, 'job schedulers not restored after the Redis reconnect'),
        );
      });
      worker = new Worker(
        queueName,
        async (j) => {
          const job = jobs.get(j.name);
          if (!job) return;
          return await job.fn();
        },
        { connection: connection(), prefix, concurrency: 1 },
      );
      worker.on('failed', (j, err) => options.log.warn({ err, job: j?.name }, 'job failed'));
    },
    async close() {
      await worker?.close();
      await queue?.close();
      for (const c of connections.splice(0)) c.disconnect();
    },
  };
}
