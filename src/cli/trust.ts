// `sigil trust-domains add|list|remove` and `sigil federations add|list|remove`: who Sigil trusts to
// vouch for workloads (SPIFFE trust domains, federated JWT issuers), through the admin API.
import type { federationView, trustDomainView } from '../workload/trust-store.js';
import {
  DEFAULT_MAX_LIFETIME_SECONDS, MAX_MAX_LIFETIME_SECONDS, MIN_MAX_LIFETIME_SECONDS,
} from '../workload/trust-input.js';
import { trustDomainProblem } from '../workload/spiffe-id.js';
import { AdminSession } from './admin-session.js';
import { requiredString, stringOption, type Command, type CommandInput, type CommandResult } from './command.js';
import { CliError, ServerError, UsageError } from './errors.js';
import { fields, table } from './output.js';

export type TrustDomainObject = ReturnType<typeof trustDomainView>;
export type FederationObject = ReturnType<typeof federationView>;
interface Removal<T> {
  removed: T;
  affected_clients: string[];
}

function absoluteUrl(value: string, option: string): string {
  if (!URL.canParse(value)) throw new UsageError(`${option} must be an absolute https URL, got ${JSON.stringify(value)}`);
  return value;
}

function formatTrustDomain(t: TrustDomainObject): string {
  return fields([['name', t.name], ['bundle_endpoint', t.bundle_endpoint], ['created_by', t.created_by], ['created_at', t.created_at]]);
}

function formatFederation(f: FederationObject): string {
  return fields([
    ['issuer', f.issuer],
    ['jwks_uri', f.jwks_uri ?? '- (OIDC discovery under the issuer)'],
    ['audience', f.audience ?? '- (Sigil\'s issuer)'],
    ['max_lifetime_seconds', String(f.max_lifetime_seconds)],
    ['created_by', f.created_by],
    ['created_at', f.created_at],
  ]);
}

function affected(ids: string[], what: string): string {
  return ids.length
    ? `These active clients relied on it and can no longer authenticate (revoke or rebind them):\n${ids.map((id) => `  ${id}`).join('\n')}`
    : `No active client relied on ${what}.`;
}

/** A call whose 404 not_found means "nothing configured under that key": said plainly. */
async function removing<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ServerError && err.status === 404 && err.error === 'not_found') throw new CliError(`${what} is not configured`);
    throw err;
  }
}

async function addTrustDomain({ positionals: [name], values, io }: CommandInput): Promise<CommandResult> {
  const problem = trustDomainProblem(name);
  if (problem) throw new UsageError(`DOMAIN: ${problem}`);
  const bundleEndpoint = absoluteUrl(requiredString(values, 'bundle-endpoint'), '--bundle-endpoint');
  const session = await AdminSession.open(io);
  const added = await session.call<TrustDomainObject>('POST', '/admin/trust-domains', { name, bundle_endpoint: bundleEndpoint });
  return { json: added, human: `Trust domain added: JWT-SVIDs and X.509-SVIDs of spiffe://${added.name}/... are checked against its bundle.\n\n${formatTrustDomain(added)}` };
}

async function listTrustDomains({ io }: CommandInput): Promise<CommandResult> {
  const session = await AdminSession.open(io);
  const domains = await session.call<TrustDomainObject[]>('GET', '/admin/trust-domains');
  return { json: domains, human: domains.length ? table(['NAME', 'BUNDLE_ENDPOINT'], domains.map((t) => [t.name, t.bundle_endpoint])) : 'no trust domains' };
}

async function removeTrustDomain({ positionals: [name], io }: CommandInput): Promise<CommandResult> {
  if (!name?.trim()) throw new UsageError('give the trust domain to remove');
  const session = await AdminSession.open(io);
  const removal = await removing(`trust domain ${JSON.stringify(name)}`, () => session.call<Removal<TrustDomainObject>>('POST', '/admin/trust-domains/remove', { name }));
  return { json: removal, human: `Trust domain removed: its SVIDs are refused on every instance within a second.\n${affected(removal.affected_clients, 'it')}\n\n${formatTrustDomain(removal.removed)}` };
}

function maxLifetime(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < MIN_MAX_LIFETIME_SECONDS || n > MAX_MAX_LIFETIME_SECONDS) {
    throw new UsageError(`--max-lifetime must be a whole number of seconds from ${MIN_MAX_LIFETIME_SECONDS} to ${MAX_MAX_LIFETIME_SECONDS}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

async function addFederation({ values, io }: CommandInput): Promise<CommandResult> {
  const issuer = absoluteUrl(requiredString(values, 'issuer'), '--issuer');
  const jwksUri = stringOption(values, 'jwks-uri');
  if (jwksUri !== undefined) absoluteUrl(jwksUri, '--jwks-uri');
  const audience = stringOption(values, 'audience');
  if (audience !== undefined && !audience.trim()) throw new UsageError('--audience needs a value (or leave it out: then aud must be Sigil\'s issuer)');
  const lifetime = maxLifetime(stringOption(values, 'max-lifetime'));
  const body = {
    issuer,
    ...(jwksUri === undefined ? {} : { jwks_uri: jwksUri }),
    ...(audience === undefined ? {} : { audience }),
    ...(lifetime === undefined ? {} : { max_lifetime_seconds: lifetime }),
  };
  const session = await AdminSession.open(io);
  const added = await session.call<FederationObject>('POST', '/admin/federations', body);
  return { json: added, human: `Federation added: JWTs whose iss is ${added.issuer} may authenticate the clients bound to their subject.\n\n${formatFederation(added)}` };
}

async function listFederations({ io }: CommandInput): Promise<CommandResult> {
  const session = await AdminSession.open(io);
  const federations = await session.call<FederationObject[]>('GET', '/admin/federations');
  return {
    json: federations,
    human: federations.length
      ? table(['ISSUER', 'JWKS_URI', 'AUDIENCE', 'MAX_LIFETIME'], federations.map((f) => [f.issuer, f.jwks_uri ?? '(discovery)', f.audience ?? '(issuer)', String(f.max_lifetime_seconds)]))
      : 'no federations',
  };
}

async function removeFederation({ positionals: [issuer], io }: CommandInput): Promise<CommandResult> {
  if (!issuer?.trim()) throw new UsageError('give the issuer of the federation to remove');
  const session = await AdminSession.open(io);
  const removal = await removing(`federation ${JSON.stringify(issuer)}`, () => session.call<Removal<FederationObject>>('POST', '/admin/federations/remove', { issuer }));
  return { json: removal, human: `Federation removed: its JWTs are refused on every instance within a second.\n${affected(removal.affected_clients, 'it')}\n\n${formatFederation(removal.removed)}` };
}

const URL_RULES = `https only (plain http to loopback hosts only with JWKS_URI_ALLOW_HTTP_LOOPBACK=true, for
development); no internal address unless its host is in JWKS_URI_ALLOWED_HOSTS: the same rules as a
client's jwks_uri.`;

export const trustCommands: Command[] = [
  {
    words: ['trust-domains', 'add'],
    summary: 'trust a SPIFFE trust domain: its bundle endpoint vouches for JWT-SVIDs and X.509-SVIDs',
    usage: 'trust-domains add DOMAIN --bundle-endpoint URL [--json]',
    help: `  DOMAIN                 the trust domain, e.g. example.org (the host of spiffe://example.org/...)
  --bundle-endpoint URL  where its SPIFFE bundle (a JWKS of jwt-svid and x509-svid keys) is served;
                         ${URL_RULES.replace(/\n/g, '\n                         ')}

The server fetches the bundle once before adding it and refuses with the reason when it cannot be
used. Clients are then bound to it with \`sigil clients create --spiffe-id spiffe://DOMAIN/...\`.
Prints the trust domain.`,
    options: { 'bundle-endpoint': { type: 'string' } },
    positionals: ['DOMAIN'],
    run: addTrustDomain,
  },
  {
    words: ['trust-domains', 'list'],
    summary: 'list the SPIFFE trust domains this instance trusts',
    usage: 'trust-domains list [--json]',
    help: '  Prints every trust domain and its bundle endpoint; with --json, an array of trust domain objects.',
    options: {},
    run: listTrustDomains,
  },
  {
    words: ['trust-domains', 'remove'],
    summary: 'stop trusting a SPIFFE trust domain (every instance within a second)',
    usage: 'trust-domains remove DOMAIN [--json]',
    help: `  DOMAIN  the trust domain to remove

Its SVIDs are refused on every instance within a second. Clients bound to its SPIFFE IDs stay, but
can no longer authenticate; they are listed (affected_clients). Prints { removed, affected_clients }.`,
    options: {},
    positionals: ['DOMAIN'],
    run: removeTrustDomain,
  },
  {
    words: ['federations', 'add'],
    summary: 'trust an external JWT issuer (Kubernetes service accounts, GitHub Actions, GitLab CI, cloud workload identity)',
    usage: 'federations add --issuer URL [--jwks-uri URL] [--audience A] [--max-lifetime SECONDS] [--json]',
    help: `  --issuer URL            the issuer, exactly as its JWTs' iss says it (e.g.
                          https://token.actions.githubusercontent.com)
  --jwks-uri URL          where its signing keys are; default: found by OIDC discovery
                          (ISSUER/.well-known/openid-configuration)
  --audience A            an aud its JWTs may carry instead of Sigil's issuer (default: only the issuer)
  --max-lifetime SECONDS  the longest lifetime (exp - iat) of a JWT accepted: default
                          ${DEFAULT_MAX_LIFETIME_SECONDS}, from ${MIN_MAX_LIFETIME_SECONDS} to ${MAX_MAX_LIFETIME_SECONDS}

URLs: ${URL_RULES.replace(/\n/g, '\n      ')}
The server fetches the keys once before adding it and refuses with the reason when they cannot be
used. Clients are then bound to a subject with \`sigil clients create --federated-subject ISSUER SUBJECT\`.
Prints the federation.`,
    options: { issuer: { type: 'string' }, 'jwks-uri': { type: 'string' }, audience: { type: 'string' }, 'max-lifetime': { type: 'string' } },
    run: addFederation,
  },
  {
    words: ['federations', 'list'],
    summary: 'list the external JWT issuers this instance trusts',
    usage: 'federations list [--json]',
    help: '  Prints every federation; with --json, an array of federation objects (jwks_uri null: OIDC discovery; audience null: Sigil\'s issuer).',
    options: {},
    run: listFederations,
  },
  {
    words: ['federations', 'remove'],
    summary: 'stop trusting an external JWT issuer (every instance within a second)',
    usage: 'federations remove ISSUER [--json]',
    help: `  ISSUER  the issuer URL of the federation to remove

Its JWTs are refused on every instance within a second. Clients bound to its subjects stay, but can
no longer authenticate; they are listed (affected_clients). Prints { removed, affected_clients }.`,
    options: {},
    positionals: ['ISSUER'],
    run: removeFederation,
  },
];
