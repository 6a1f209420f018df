#!/usr/bin/env node
// Creates real BullMQ queue states in Redis (using only the public bullmq API)
// so that the Python code that reads BullMQ keys directly can be checked
// against what BullMQ itself reports.
//
//   node scenario.mjs <command> --redis redis://127.0.0.1:6379 --prefix bull --queue NAME [--major 5|6] [options]
//
// --major picks the bullmq that runs the command: 5 (bullmq 5.81.5, the default) or 6 (bullmq 6.7.0),
// installed side by side under the npm aliases bullmq5 and bullmq6 (BULLMQ_MAJOR sets the default).
//
// --cluster connects through an ioredis Cluster (new Cluster([seed node of --redis])) instead of a
// single-node connection, for a Redis Cluster; the prefix must then hold a {hash-tag} (--prefix {bull}).
//
// Commands (every command prints one JSON document on stdout):
//   populate        --completed N --failed N --waiting N --delayed N --prioritized N
//                   [--delay-ms 3600000] [--timeout-ms 30000]
//                   Completed/failed jobs are produced by a real Worker (the processor
//                   throws for jobs whose data has fail: true). Waiting, delayed
//                   (delay in the future) and prioritized (priority 1..N) jobs are
//                   added after that worker is closed, so they stay where they are.
//   crash-active    --count N [--lock-duration 30000] [--stalled-interval 30000]
//                   [--max-stalled-count 1] [--kill exit|SIGKILL] [--timeout-ms 30000]
//                   Adds N jobs, starts a Worker (concurrency N) whose processor never
//                   resolves, waits until the N jobs are active, then leaves the process
//                   abruptly without closing anything: the jobs stay in `active` and their
//                   locks expire after lockDuration.
//   pause | resume  queue.pause() / queue.resume().
//   waiting-children [--count 1] [--children 1] [--child-queue NAME]
//                   FlowProducer parent(s) with unfinished child job(s): the parent is in
//                   `waiting-children`, each child waits in --child-queue (default: --queue).
//   counts          queue.getJobCounts() (the major's default types), queue.getJobCounts('paused')
//                   (bullmq 6 leaves `paused` out of the default), queue.isPaused(),
//                   queue.getWaitingCount(). The Queue is opened with skipMetasUpdate so that
//                   counting does not create the meta key of a queue that does not exist.
//   open            Opens a Queue (which writes the meta version of its major) and prints it.
//   stalled-check   [--max-stalled-count 1]
//                   bullmq's own stalled-job recovery, once, on a Worker that processes nothing:
//                   the first check marks the active jobs, the second (after the check interval)
//                   moves those whose lock has expired. Prints the ids it moved.
//   work            --seconds S [--concurrency 1] [--job-ms 0] [--lock-duration 30000]
//                   [--stalled-interval 30000] [--max-stalled-count 1]
//                   Runs a Worker for S seconds (fails jobs whose data has fail: true),
//                   then closes it gracefully; prints the ids it completed/failed and
//                   the stalled ids its stalled checker reported.
//   job-state       --id X   queue.getJobState(X) plus the job's counters.
//   obliterate      queue.obliterate({ force: true }) (test clean-up helper).
//   workers         --count N [--names a,b] [--queues q1,q2] [--run] [--timeout-ms 30000]
//                   Starts N Workers on each queue of --queues (default: --queue), the first ones named
//                   by --names (Worker option `name`, so their connection is `<prefix>:<base64>:w:<name>`),
//                   processing jobs only with --run. Once Node's queue.getWorkersCount() sees them all (with
//                   --cluster: once its answer is stable; bullmq counts only the node with the most of them)
//                   it prints {workersCount: {queue: n}} and keeps them alive until its stdin closes, then
//                   closes them gracefully and prints {closed: true}.
//   workers-count   [--queues q1,q2]  queue.getWorkersCount() of each queue as Node reports it.
//   add-aged        --ages S1,S2,... [--priority P] [--lifo]
//                   One job per age, added now with the job option `timestamp` = now - age seconds (and
//                   priority P / lifo); prints the ids and the timestamps.
import fs from 'node:fs';
import { Cluster } from 'ioredis';

const USAGE =
  'usage: node scenario.mjs <populate|crash-active|pause|resume|waiting-children|counts|open|stalled-check|work|job-state|obliterate|' +
  'workers|workers-count|add-aged> ' +
  '--redis redis://127.0.0.1:6379 --prefix bull --queue NAME [--major 5|6] [--cluster] [options]';
const PACKAGES = { 5: 'bullmq5', 6: 'bullmq6' };
// Set by main() from the bullmq of the requested major.
let FlowProducer, Queue, Worker;

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const opts = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument: ${arg}`);
    const eq = arg.indexOf('=');
    if (eq !== -1) {
      opts[arg.slice(2, eq)] = arg.slice(eq + 1);
    } else {
      const next = rest[i + 1];
      if (next === undefined || next.startsWith('--')) {
        opts[arg.slice(2)] = 'true';
      } else {
        opts[arg.slice(2)] = next;
        i++;
      }
    }
  }
  return { command, opts };
}

function intOpt(opts, name, dflt) {
  if (opts[name] === undefined) return dflt;
  const n = Number(opts[name]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
  return n;
}

// redis://[user[:password]@]host[:port][/db]  (rediss:// enables TLS)
function connectionFromUrl(url) {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new Error(`unsupported redis url: ${url}`);
  }
  const conn = {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    // required by BullMQ Workers, harmless for Queues
    maxRetriesPerRequest: null,
  };
  if (u.username) conn.username = decodeURIComponent(u.username);
  if (u.password) conn.password = decodeURIComponent(u.password);
  const db = u.pathname.replace(/^\//, '');
  if (db) conn.db = Number(db);
  if (u.protocol === 'rediss:') conn.tls = {};
  return conn;
}

// An ioredis Cluster seeded with the node of --redis (it discovers the others), shared by the command's
// Queue/Worker/FlowProducer objects (each Worker duplicates it for its blocking connection).
function clusterFromUrl(url) {
  const { host, port, username, password, tls } = connectionFromUrl(url);
  const redisOptions = { maxRetriesPerRequest: null, username, password, tls };
  return new Cluster([{ host, port }], { redisOptions, enableReadyCheck: true });
}

function out(obj) {
  // synchronous write: crash-active exits right after printing
  fs.writeSync(1, JSON.stringify(obj) + '\n');
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function waitFor(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

async function processJob(job, jobMs) {
  if (jobMs > 0) await sleep(jobMs);
  if (job.data && job.data.fail) {
    throw new Error(`scenario failure for job ${job.id}`);
  }
  return { ok: true, id: job.id };
}

async function populate(ctx) {
  const { opts, queueName, base } = ctx;
  const n = {
    completed: intOpt(opts, 'completed', 0),
    failed: intOpt(opts, 'failed', 0),
    waiting: intOpt(opts, 'waiting', 0),
    delayed: intOpt(opts, 'delayed', 0),
    prioritized: intOpt(opts, 'prioritized', 0),
  };
  const delayMs = intOpt(opts, 'delay-ms', 3600000);
  const timeoutMs = intOpt(opts, 'timeout-ms', 30000);
  const queue = new Queue(queueName, base);
  const ids = { completed: [], failed: [], waiting: [], delayed: [], prioritized: [] };
  try {
    if (n.completed + n.failed > 0) {
      // The worker would also take any job already waiting, which would make the
      // requested numbers wrong: refuse instead.
      const before = await queue.getJobCounts('waiting', 'prioritized', 'active');
      const pending = Object.values(before).reduce((a, b) => a + b, 0);
      if (pending > 0 || (await queue.isPaused())) {
        throw new Error(
          `populate --completed/--failed needs a non-paused queue without waiting/prioritized/active jobs (found ${JSON.stringify(before)})`,
        );
      }
      const finishedJobs = [
        ...Array.from({ length: n.completed }, (_, i) => ({ name: 'populate-complete', data: { i, fail: false } })),
        ...Array.from({ length: n.failed }, (_, i) => ({ name: 'populate-fail', data: { i, fail: true } })),
      ];
      const added = await queue.addBulk(finishedJobs);
      const wanted = new Set(added.map(j => j.id));
      const done = { completed: [], failed: [] };
      const worker = new Worker(queueName, job => processJob(job, 0), {
        ...base,
        concurrency: 1,
        autorun: false,
      });
      worker.on('completed', job => wanted.has(job.id) && done.completed.push(job.id));
      worker.on('failed', job => job && wanted.has(job.id) && done.failed.push(job.id));
      worker.on('error', err => process.stderr.write(`worker error: ${err}\n`));
      worker.run();
      try {
        await waitFor(
          () => done.completed.length + done.failed.length >= wanted.size,
          timeoutMs,
          `${wanted.size} jobs to be completed/failed`,
        );
      } finally {
        await worker.close();
      }
      ids.completed = done.completed;
      ids.failed = done.failed;
    }
    const addMany = async (count, name, jobOpts) => {
      const jobs = Array.from({ length: count }, (_, i) => ({
        name,
        data: { i },
        opts: typeof jobOpts === 'function' ? jobOpts(i) : jobOpts,
      }));
      return (await queue.addBulk(jobs)).map(j => j.id);
    };
    ids.waiting = await addMany(n.waiting, 'populate-waiting', {});
    ids.delayed = await addMany(n.delayed, 'populate-delayed', { delay: delayMs });
    ids.prioritized = await addMany(n.prioritized, 'populate-prioritized', i => ({ priority: i + 1 }));
    out({ command: 'populate', queue: queueName, ids });
  } finally {
    await queue.close();
  }
}

async function crashActive(ctx) {
  const { opts, queueName, base } = ctx;
  const count = intOpt(opts, 'count', 1);
  if (count < 1) throw new Error('--count must be >= 1');
  const lockDuration = intOpt(opts, 'lock-duration', 30000);
  const stalledInterval = intOpt(opts, 'stalled-interval', 30000);
  const maxStalledCount = intOpt(opts, 'max-stalled-count', 1);
  const timeoutMs = intOpt(opts, 'timeout-ms', 30000);
  const kill = opts.kill || 'exit';
  if (kill !== 'exit' && kill !== 'SIGKILL') throw new Error('--kill must be exit or SIGKILL');

  const queue = new Queue(queueName, base);
  const added = await queue.addBulk(
    Array.from({ length: count }, (_, i) => ({ name: 'crash-active', data: { i } })),
  );
  const wanted = new Set(added.map(j => j.id));
  const started = new Set();
  const worker = new Worker(
    queueName,
    job => {
      started.add(job.id);
      return new Promise(() => {}); // never settles
    },
    { ...base, concurrency: count, lockDuration, stalledInterval, maxStalledCount },
  );
  worker.on('error', err => process.stderr.write(`worker error: ${err}\n`));
  await waitFor(
    () => [...wanted].every(id => started.has(id)),
    timeoutMs,
    `${count} jobs to become active`,
  );
  const active = (await queue.getActive()).map(j => j.id);
  out({
    command: 'crash-active',
    queue: queueName,
    ids: [...wanted],
    active,
    lockDuration,
    stalledInterval,
    maxStalledCount,
    pid: process.pid,
    kill,
  });
  // No worker.close()/queue.close(): the connections just drop with the process.
  if (kill === 'SIGKILL') process.kill(process.pid, 'SIGKILL');
  process.exit(0);
}

async function pauseResume(ctx, pause) {
  const queue = new Queue(ctx.queueName, ctx.base);
  try {
    if (pause) await queue.pause();
    else await queue.resume();
    out({ command: pause ? 'pause' : 'resume', queue: ctx.queueName, isPaused: await queue.isPaused() });
  } finally {
    await queue.close();
  }
}

async function waitingChildren(ctx) {
  const { opts, queueName, base } = ctx;
  const count = intOpt(opts, 'count', 1);
  const children = intOpt(opts, 'children', 1);
  if (children < 1) throw new Error('--children must be >= 1');
  const childQueue = opts['child-queue'] || queueName;
  const flow = new FlowProducer(base);
  try {
    const parents = [];
    for (let p = 0; p < count; p++) {
      const tree = await flow.add({
        name: 'parent',
        queueName,
        data: { p },
        children: Array.from({ length: children }, (_, c) => ({
          name: 'child',
          queueName: childQueue,
          data: { p, c },
        })),
      });
      parents.push({ id: tree.job.id, children: tree.children.map(ch => ch.job.id) });
    }
    out({ command: 'waiting-children', queue: queueName, childQueue, parents });
  } finally {
    await flow.close();
  }
}

async function counts(ctx) {
  const queue = new Queue(ctx.queueName, { ...ctx.base, skipMetasUpdate: true });
  try {
    const jobCounts = await queue.getJobCounts();
    const { paused: pausedCount } = await queue.getJobCounts('paused');
    const isPaused = await queue.isPaused();
    const waitingCount = await queue.getWaitingCount();
    out({ command: 'counts', queue: ctx.queueName, major: ctx.major, jobCounts, pausedCount, isPaused, waitingCount });
  } finally {
    await queue.close();
  }
}

async function open(ctx) {
  const queue = new Queue(ctx.queueName, ctx.base);
  try {
    // The constructor writes the meta version without being awaited: wait until it is there.
    let version = null;
    await waitFor(
      async () => (version = await queue.getVersion())?.startsWith(`bullmq:${ctx.major}.`),
      5000,
      'the meta version',
    );
    out({ command: 'open', queue: ctx.queueName, major: ctx.major, version });
  } finally {
    await queue.close();
  }
}

async function work(ctx) {
  const { opts, queueName, base } = ctx;
  const seconds = Number(opts.seconds ?? 5);
  if (!(seconds > 0)) throw new Error('--seconds must be > 0');
  const jobMs = intOpt(opts, 'job-ms', 0);
  const worker = new Worker(queueName, job => processJob(job, jobMs), {
    ...base,
    concurrency: intOpt(opts, 'concurrency', 1),
    lockDuration: intOpt(opts, 'lock-duration', 30000),
    stalledInterval: intOpt(opts, 'stalled-interval', 30000),
    maxStalledCount: intOpt(opts, 'max-stalled-count', 1),
  });
  const result = { completed: [], failed: [], failedReasons: {}, stalled: [] };
  worker.on('completed', job => result.completed.push(job.id));
  worker.on('failed', (job, err) => {
    if (!job) return;
    result.failed.push(job.id);
    result.failedReasons[job.id] = err ? err.message : job.failedReason;
  });
  worker.on('stalled', jobId => result.stalled.push(jobId));
  worker.on('error', err => process.stderr.write(`worker error: ${err}\n`));
  await sleep(seconds * 1000);
  await worker.close();
  out({ command: 'work', queue: queueName, seconds, ...result });
}

async function jobState(ctx) {
  const id = ctx.opts.id;
  if (!id || id === 'true') throw new Error('job-state needs --id');
  const queue = new Queue(ctx.queueName, { ...ctx.base, skipMetasUpdate: true });
  try {
    const state = await queue.getJobState(id);
    const job = await queue.getJob(id);
    out({
      command: 'job-state',
      queue: ctx.queueName,
      id,
      state,
      job: job
        ? {
            name: job.name,
            attemptsMade: job.attemptsMade,
            attemptsStarted: job.attemptsStarted,
            stalledCounter: job.stalledCounter,
            processedOn: job.processedOn ?? null,
            finishedOn: job.finishedOn ?? null,
            failedReason: job.failedReason ?? null,
            returnvalue: job.returnvalue ?? null,
            deferredFailure: job.deferredFailure ?? null,
          }
        : null,
    });
  } finally {
    await queue.close();
  }
}

async function stalledCheck(ctx) {
  const { opts, queueName, base } = ctx;
  const stalledInterval = 100;
  const worker = new Worker(queueName, null, {
    ...base,
    autorun: false,
    stalledInterval,
    maxStalledCount: intOpt(opts, 'max-stalled-count', 1),
  });
  const stalled = [];
  worker.on('stalled', jobId => stalled.push(jobId));
  try {
    await worker.waitUntilReady();
    await worker.moveStalledJobsToWait(); // marks the active jobs
    await sleep(stalledInterval + 50); // the stalled-check key expires
    await worker.moveStalledJobsToWait();
    out({ command: 'stalled-check', queue: queueName, stalled });
  } finally {
    await worker.close();
  }
}

async function obliterate(ctx) {
  const queue = new Queue(ctx.queueName, { ...ctx.base, skipMetasUpdate: true });
  try {
    await queue.obliterate({ force: true });
    out({ command: 'obliterate', queue: ctx.queueName });
  } finally {
    await queue.close();
  }
}

function queueList(ctx) {
  const names = (ctx.opts.queues && ctx.opts.queues !== 'true' ? ctx.opts.queues : ctx.queueName).split(',');
  return names.map(name => name.trim()).filter(Boolean);
}

async function workersCountOf(ctx, names) {
  const counts = {};
  for (const name of names) {
    const queue = new Queue(name, { ...ctx.base, skipMetasUpdate: true });
    try {
      counts[name] = await queue.getWorkersCount();
    } finally {
      await queue.close();
    }
  }
  return counts;
}

async function workers(ctx) {
  const { opts } = ctx;
  const count = intOpt(opts, 'count', 1);
  const names = opts.names && opts.names !== 'true' ? opts.names.split(',') : [];
  const timeoutMs = intOpt(opts, 'timeout-ms', 30000);
  const queues = queueList(ctx);
  const started = [];
  for (const queueName of queues) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(queueName, job => processJob(job, 0), {
        ...ctx.base,
        autorun: opts.run === 'true',
        ...(i < names.length ? { name: names[i] } : {}),
      });
      worker.on('error', err => process.stderr.write(`worker error: ${err}\n`));
      started.push(worker);
    }
  }
  await Promise.all(started.map(worker => worker.waitUntilReady()));
  let workersCount = {};
  let previous = null;
  await waitFor(
    async () => {
      workersCount = await workersCountOf(ctx, queues);
      if (ctx.cluster) {
        // bullmq counts a Cluster's workers on the node with the most of them: fewer than started when their
        // connections are spread over nodes. Wait until the answer is the same twice in a row.
        const same = JSON.stringify(workersCount) === previous;
        previous = JSON.stringify(workersCount);
        if (!same) await sleep(200);
        return same && queues.every(name => workersCount[name] >= 1);
      }
      return queues.every(name => workersCount[name] >= count);
    },
    timeoutMs,
    `getWorkersCount() to see ${count} workers on each queue`,
  );
  out({ command: 'workers', queues, count, names, workersCount, pid: process.pid });
  await new Promise(resolve => {
    process.stdin.on('end', resolve);
    process.stdin.on('close', resolve);
    process.stdin.resume();
  });
  await Promise.all(started.map(worker => worker.close()));
  out({ command: 'workers', closed: true });
}

async function workersCount(ctx) {
  out({ command: 'workers-count', workersCount: await workersCountOf(ctx, queueList(ctx)) });
}

async function addAged(ctx) {
  const { opts, queueName, base } = ctx;
  const ages = (opts.ages || '').split(',').filter(Boolean).map(Number);
  if (!ages.length || ages.some(age => !(age >= 0))) throw new Error('--ages must list non-negative seconds');
  const priority = intOpt(opts, 'priority', 0);
  const queue = new Queue(queueName, base);
  try {
    const now = Date.now();
    const jobs = [];
    for (const [i, age] of ages.entries()) {
      const timestamp = now - Math.round(age * 1000);
      const job = await queue.add('aged', { i }, {
        timestamp,
        ...(priority ? { priority } : {}),
        ...(opts.lifo === 'true' ? { lifo: true } : {}),
      });
      jobs.push({ id: job.id, timestamp });
    }
    out({ command: 'add-aged', queue: queueName, now, jobs });
  } finally {
    await queue.close();
  }
}

async function main() {
  const { command, opts } = parseArgs(process.argv.slice(2));
  if (!command || command === '--help' || command === 'help') {
    fs.writeSync(2, USAGE + '\n');
    return 2;
  }
  const queueName = opts.queue;
  if (!queueName || queueName === 'true') throw new Error('--queue is required');
  const major = Number(opts.major ?? process.env.BULLMQ_MAJOR ?? 5);
  if (!PACKAGES[major]) throw new Error(`--major must be one of ${Object.keys(PACKAGES).join(', ')}`);
  ({ FlowProducer, Queue, Worker } = await import(PACKAGES[major]));
  const url = opts.redis || 'redis://127.0.0.1:6379';
  const cluster = opts.cluster === 'true' ? clusterFromUrl(url) : null;
  const ctx = {
    opts,
    major,
    cluster: Boolean(cluster),
    queueName,
    base: {
      connection: cluster || connectionFromUrl(url),
      prefix: opts.prefix || 'bull',
    },
  };
  try {
    await run(command, ctx);
  } finally {
    if (cluster) await cluster.quit(); // shared: no Queue or Worker closes it
  }
  return 0;
}

async function run(command, ctx) {
  switch (command) {
    case 'populate':
      await populate(ctx);
      break;
    case 'crash-active':
      await crashActive(ctx);
      break;
    case 'pause':
      await pauseResume(ctx, true);
      break;
    case 'resume':
      await pauseResume(ctx, false);
      break;
    case 'waiting-children':
      await waitingChildren(ctx);
      break;
    case 'counts':
      await counts(ctx);
      break;
    case 'open':
      await open(ctx);
      break;
    case 'stalled-check':
      await stalledCheck(ctx);
      break;
    case 'work':
      await work(ctx);
      break;
    case 'job-state':
      await jobState(ctx);
      break;
    case 'obliterate':
      await obliterate(ctx);
      break;
    case 'workers':
      await workers(ctx);
      break;
    case 'workers-count':
      await workersCount(ctx);
      break;
    case 'add-aged':
      await addAged(ctx);
      break;
    default:
      throw new Error(`unknown command: ${command}\n${USAGE}`);
  }
}

main().then(
  code => {
    process.exitCode = code;
  },
  err => {
    fs.writeSync(2, `scenario.mjs: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
