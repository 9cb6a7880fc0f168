// The grant types Sigil serves, by their registered names: one copy for the grants, client metadata,
// registration and metrics labels.
export const CLIENT_CREDENTIALS = 'client_credentials';
/** RFC 8693 */
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const REFRESH_TOKEN = 'refresh_token';

export const GRANT_TYPES = [CLIENT_CREDENTIALS, TOKEN_EXCHANGE, REFRESH_TOKEN] as const;
export type GrantType = (typeof GRANT_TYPES)[number];
