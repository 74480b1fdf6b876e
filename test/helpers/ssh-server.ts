// A real sshd on loopback serving git over ssh, for tests of ssh URLs.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { tempDir } from './app.ts';

export interface SshServer {
  port: number;
  /** The client's private key, accepted by the server. */
  keyFile: string;
  /** A known_hosts file holding the server's host key. */
  knownHostsFile: string;
  close(): void;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Whether this machine can run sshd (the openssh-server package). */
export const SSHD = '/usr/sbin/sshd';
export const sshdAvailable = existsSync(SSHD);

/** Starts sshd as the current user on a free loopback port, with a fresh host key and client key. */
export async function startSshServer(): Promise<SshServer> {
  const dir = tempDir('iu-sshd-');
  const keygen = (file: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
  keygen(path.join(dir, 'host_key'));
  keygen(path.join(dir, 'client_key'));
  writeFileSync(path.join(dir, 'authorized_keys'), readFileSync(path.join(dir, 'client_key.pub')));
  mkdirSync('/run/sshd', { recursive: true });
  const port = await freePort();
  writeFileSync(
    path.join(dir, 'sshd_config'),
    `Port ${port}
ListenAddress 127.0.0.1
HostKey ${path.join(dir, 'host_key')}
AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile ${path.join(dir, 'sshd.pid')}
`,
  );
  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', path.join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Ready when the port accepts connections.
  for (let i = 0; i < 100; i++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => (socket.end(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (open) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const hostKey = readFileSync(path.join(dir, 'host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
  writeFileSync(path.join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostKey}\n`);
  return {
    port,
    keyFile: path.join(dir, 'client_key'),
    knownHostsFile: path.join(dir, 'known_hosts'),
    close: () => void child.kill(),
  };
}
