// An authenticated conversation with the admin API: one DPoP-bound admin token per CLI run (private_key_jwt
// with the admin key, which also signs the DPoP proofs), and one fresh proof per request.
import {
  dpopProof, requestToken, TokenError, type SigningKeyPair,
} from '../client/oauth-client.js';
import { ADMIN_CLIENT_ID, ADMIN_SCOPE, adminAudience } from '../clients/admin-clients.js';
import type { CliIo } from './command.js';
import { readAdminKey } from './admin-key.js';
import { CliError } from './errors.js';
import { connect, isNetworkError, readJson, unreachable, type SigilServer } from './server.js';
import { adminKeyFile, sigilUrl } from './settings.js';

/** The admin key could not get a token: the server does not know it (or its client is not active). */
export class AdminKeyRefused extends CliError {
  override name = 'AdminKeyRefused';
  constructor(readonly keyFile: string, readonly server: SigilServer, readonly refusal: TokenError) {
    super(`Sigil at ${server.origin} refused the admin key in ${keyFile} (${refusal.body.error ?? refusal.status}${refusal.body.error_description ? `: ${refusal.body.error_description}` : ''}); `
      + 'it is not the key of this server\'s admin client. Use the key file `sigil init` wrote for this server (set SIGIL_KEYS_DIR to its directory).');
  }
}

export class AdminSession {
  #token: string | undefined;

  constructor(readonly server: SigilServer, readonly key: SigningKeyPair, readonly keyFile: string) {}

  /** Load the admin key from SIGIL_KEYS_DIR and discover the server: what every admin command starts with. */
  static async open(io: CliIo): Promise<AdminSession> {
    // SIGIL_URL first: a refused URL (plain http to another host) is the first thing to fix
    const url = sigilUrl(io);
    const keyFile = adminKeyFile(io);
    const key = await readAdminKey(keyFile);
    if (!key) throw new CliError(`no admin key at ${keyFile}; run \`sigil init\` first, or set SIGIL_KEYS_DIR to the directory that holds ${ADMIN_CLIENT_ID}'s key`);
    return new AdminSession(await connect(io, url), key, keyFile);
  }

  async #accessToken(): Promise<string> {
    if (this.#token) return this.#token;
    const { server } = this;
    const tokenPath = new URL(server.metadata.token_endpoint).pathname;
    try {
      const res = await requestToken({
        tokenEndpoint: `${server.origin}${tokenPath}`,
        htu: server.metadata.token_endpoint,
        issuer: server.issuer,
        clientId: ADMIN_CLIENT_ID,
        clientKey: this.key,
        dpopKey: this.key,
        resource: adminAudience(server.issuer),
        scope: ADMIN_SCOPE,
      });
      this.#token = res.access_token;
      return res.access_token;
    } catch (err) {
      if (err instanceof TokenError && err.body.error === 'invalid_client') throw new AdminKeyRefused(this.keyFile, server, err);
      if (err instanceof TokenError) throw new CliError(`could not get an admin token from Sigil at ${server.origin}: ${err.message}`);
      if (isNetworkError(err)) throw unreachable(server.origin, err);
      throw err;
    }
  }

  /** Call the admin API; `path` is the path only (no query), the same for the request and the proof's htu. */
  async call<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const token = await this.#accessToken();
    const res = await this.server.fetch(path, {
      method,
      headers: {
        authorization: `DPoP ${token}`,
        dpop: await dpopProof(this.key, method, this.server.issuerUrl(path), { accessToken: token }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return readJson<T>(res);
  }
}
