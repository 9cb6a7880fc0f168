// `sigil init`: make sure the server has its admin client and that SIGIL_KEYS_DIR holds that client's
// private key. Safe to run any number of times; it never replaces a key the server knows.
import { SignJWT } from 'jose';
import { generateClientKey, keyPairFromPrivateJwk, type SigningKeyPair } from '../client/oauth-client.js';
import { ADMIN_CLIENT_ID } from '../clients/admin-clients.js';
import { readAdminKey, stageKeyFile } from './admin-key.js';
import { AdminKeyRefused, AdminSession } from './admin-session.js';
import type { Command, CommandInput, CommandResult } from './command.js';
import { CliError, ServerError } from './errors.js';
import { formatClient, type ClientObject } from './output.js';
import { connect, NoAnswer, readJson, type SigilServer } from './server.js';
import { ADMIN_KEY_FILE, adminKeyFile, sigilUrl } from './settings.js';

/**
 * Ask the server to create the admin client for `key` (allowed once, from loopback only). Returns the
 * admin client, or undefined when the server already has one.
 */
async function bootstrap(server: SigilServer, key: SigningKeyPair): Promise<ClientObject | undefined> {
  // the proof carries the public key itself: it is the key the admin client will be created with
  const { kid: _kid, alg: _alg, use: _use, key_ops: _ops, ...jwk } = key.publicJwk;
  const proof = await new SignJWT({})
    .setProtectedHeader({ alg: key.alg, typ: 'sigil-bootstrap+jwt', jwk })
    .setAudience(server.issuerUrl('/admin/bootstrap'))
    .setIssuedAt()
    .sign(key.privateKey);
  const res = await server.fetch('/admin/bootstrap', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ proof }),
  });
  try {
    return await readJson<ClientObject>(res);
  } catch (err) {
    if (err instanceof ServerError && err.status === 409 && err.error === 'already_initialized') return undefined;
    throw err;
  }
}

/** No key on disk: generate one, have the server register it, and only then give it its final name. */
async function createAdmin(server: SigilServer, keyFile: string): Promise<CommandResult> {
  const { privateJwk } = await generateClientKey('ES256');
  const key = await keyPairFromPrivateJwk(privateJwk);
  const staged = await stageKeyFile(keyFile, privateJwk);
  let admin: ClientObject | undefined;
  try {
    admin = await bootstrap(server, key);
  } catch (err) {
    if (err instanceof NoAnswer && err.maybeReceived) {
      // The server may or may not have registered the key. Keep it: a second `sigil init` finds out,
      // whereas deleting a key the server took would lock the admin out for good.
      await staged.commit().catch(() => undefined);
      throw new CliError(`${err.message}; the new admin key was kept at ${keyFile}: run \`sigil init\` again to finish`);
    }
    await staged.discard();
    throw err;
  }
  if (!admin) {
    await staged.discard();
    throw new CliError(`Sigil at ${server.origin} already has an admin client, but there is no admin key at ${keyFile}. `
      + `Place the admin's key file (${ADMIN_KEY_FILE}) there, or set SIGIL_KEYS_DIR to the directory that holds it.`);
  }
  try {
    await staged.commit();
  } catch (err) {
    throw new CliError(`Sigil registered the new admin key, but it could not be moved to ${keyFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}). `
      + `It is in ${staged.tempFile}: move it to ${keyFile} yourself and keep it mode 0600.`);
  }
  return result(admin, keyFile, `Initialised Sigil at ${server.origin}: admin client ${admin.client_id} created.\n`
    + `Admin key written to ${keyFile} (mode 0600). Whoever holds this file administers the server: keep it like a root password.`);
}

/** A key on disk: it must be the admin's. On a server with no admin yet (say, a fresh database) it becomes the admin's. */
async function adoptExistingKey(server: SigilServer, key: SigningKeyPair, keyFile: string): Promise<CommandResult> {
  const session = new AdminSession(server, key, keyFile);
  try {
    const admin = await session.call<ClientObject>('GET', `/admin/clients/${ADMIN_CLIENT_ID}`);
    return result(admin, keyFile, `Already initialised: ${keyFile} is the key of admin client ${admin.client_id} at ${server.origin}. Nothing changed.`);
  } catch (err) {
    if (!(err instanceof AdminKeyRefused)) throw err;
    const admin = await bootstrap(server, key);
    if (!admin) {
      throw new CliError(`Sigil at ${server.origin} already has an admin client, and the key in ${keyFile} is not its key `
        + `(the server answered ${err.refusal.body.error ?? err.refusal.status}). Place the admin's key file there, `
        + 'set SIGIL_KEYS_DIR to the directory that holds it, or point SIGIL_URL at the server this key belongs to.');
    }
    return result(admin, keyFile, `Initialised Sigil at ${server.origin} with the existing key in ${keyFile}: admin client ${admin.client_id} created.`);
  }
}

function result(admin: ClientObject, keyFile: string, headline: string): CommandResult {
  return { json: { ...admin, key_file: keyFile }, human: `${headline}\n\n${formatClient(admin)}` };
}

async function init({ io }: CommandInput): Promise<CommandResult> {
  const url = sigilUrl(io);
  const keyFile = adminKeyFile(io);
  const key = await readAdminKey(keyFile);
  const server = await connect(io, url);
  return key ? adoptExistingKey(server, key, keyFile) : createAdmin(server, keyFile);
}

export const initCommands: Command[] = [
  {
    words: ['init'],
    summary: 'create the admin client and its key (idempotent)',
    usage: 'init [--json]',
    help: `Creates the admin client (${ADMIN_CLIENT_ID}) on the server and writes its private key to
$SIGIL_KEYS_DIR/${ADMIN_KEY_FILE} (default ./keys, mode 0600). Run it on the server's own host:
the server accepts the bootstrap only from loopback, and only while it has no admin client.

Running it again is safe: with the key already in place it checks that the server knows it and
changes nothing. With --json it prints the admin client object plus "key_file".`,
    options: {},
    run: init,
  },
];
