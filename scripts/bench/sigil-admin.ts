// Just enough of the admin API to bench Sigil: bootstrap the admin client (loopback only), then
// create one client the way `sigil clients create` does.
import { SignJWT, type JWK } from 'jose';
import { dpopProof, generateClientKey, keyPairFromPrivateJwk, requestToken } from '../../src/client/oauth-client.js';

export async function createBenchClient(url: string, client: { jwks: { keys: JWK[] }; scope: string; audiences: string[] }): Promise<string> {
  const issuer = url;
  const admin = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
  const { kid: _k, alg: _a, use: _u, ...jwk } = admin.publicJwk;
  const proof = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', typ: 'sigil-bootstrap+jwt', jwk })
    .setAudience(`${issuer}/admin/bootstrap`)
    .setIssuedAt()
    .sign(admin.privateKey);
  const boot = await fetch(`${url}/admin/bootstrap`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ proof }) });
  if (boot.status !== 201) throw new Error(`admin bootstrap failed: ${boot.status} ${await boot.text()}`);

  const token = await requestToken({
    tokenEndpoint: `${url}/token`, issuer, clientId: 'sigil-admin', clientKey: admin, dpopKey: admin, resource: `${issuer}/admin`, scope: 'sigil:admin',
  });
  const res = await fetch(`${url}/admin/clients`, {
    method: 'POST',
    headers: {
      authorization: `DPoP ${token.access_token}`,
      dpop: await dpopProof(admin, 'POST', `${issuer}/admin/clients`, { accessToken: token.access_token }),
      'content-type': 'application/json',
    },
    body: JSON.stringify({ name: 'bench client', ...client }),
  });
  const body = (await res.json().catch(() => ({}))) as { client_id?: string };
  if (res.status !== 201 || !body.client_id) throw new Error(`client creation failed: ${res.status} ${JSON.stringify(body)}`);
  return body.client_id;
}
