import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Where an app process listens, as the daemon connects to it. */
export interface Upstream {
  host: string;
  port: number;
}

/**
 * The TCP ports that `rootPid` or any process it started listens on, found the way `ss -lp` does:
 * the socket inodes among each process's open files (`/proc/<pid>/fd`), looked up in the
 * listening sockets of its network namespace (`/proc/<pid>/net/tcp` and `tcp6`, state `0A`).
 * Sorted by port. Empty when `/proc` is not there (not Linux) or the process is gone.
 *
 * @example
 * listeningSockets(child.pid) // [{ host: '127.0.0.1', port: 8080 }]
 */
export function listeningSockets(rootPid: number): Upstream[] {
  const inodes = new Set<string>();
  for (const pid of processTree(rootPid)) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {}
    }
  }
  if (inodes.size === 0) return [];
  const found = new Map<number, Upstream>();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${rootPid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue;
      const [addr, portHex] = f[1]!.split(':');
      const port = Number.parseInt(portHex!, 16);
      if (!found.has(port)) found.set(port, { host: connectAddress(decodeAddress(addr!)), port });
    }
  }
  return [...found.values()].sort((a, b) => a.port - b.port);
}

/** `rootPid` and its descendants (from each process's parent in `/proc/<pid>/stat`). */
function processTree(rootPid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [rootPid];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {}
  }
  const out: number[] = [];
  const todo = [rootPid];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** `/proc/net/tcp*` addresses: 32-bit words in host (little-endian) byte order. */
export function decodeAddress(hex: string): string {
  const word = (w: string) => [6, 4, 2, 0].map((i) => Number.parseInt(w.slice(i, i + 2), 16));
  if (hex.length === 8) return word(hex).join('.');
  const bytes: number[] = [];
  for (let i = 0; i < 32; i += 8) bytes.push(...word(hex.slice(i, i + 8)));
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff)
    return bytes.slice(12).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

/**
 * The address the daemon connects to for a socket listening on `address`. Any address → IPv4
 * loopback: an IPv6 wildcard socket (what Node's `listen(port)` opens) is dual-stack and takes
 * IPv4 too, while `::1` does not exist in a container whose engine disables IPv6 (Docker's default).
 */
export function connectAddress(address: string): string {
  if (address === '0.0.0.0' || address === '::' || address === '0:0:0:0:0:0:0:0') return '127.0.0.1';
  return address;
}
