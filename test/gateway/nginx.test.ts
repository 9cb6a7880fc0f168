// The issue-12 cases through Debian's nginx with auth_request (the config of docs/GATEWAYS.md).
import { nginxAvailable, startNginx } from '../support/nginx.js';
import { gatewaySuite } from './suite.js';

gatewaySuite('nginx', startNginx, { skip: !nginxAvailable() && 'nginx is not installed (.ci/run installs it)' });
