// The issue-12 cases through Debian's caddy with forward_auth (the Caddyfile of docs/GATEWAYS.md).
import { caddyAvailable, startCaddy } from '../support/caddy.js';
import { gatewaySuite } from './suite.js';

gatewaySuite('caddy', startCaddy, { skip: !caddyAvailable() && 'caddy is not installed (.ci/run installs it)' });
