// Test-only OAuth 2.0 authorization server built on oidc-provider.
//
// Env:
//   PORT                  (required) TCP port to listen on, on 127.0.0.1
//   INITIAL_ACCESS_TOKEN  (required) bearer token for RFC 7591 POST /reg
//   SCOPES                (optional) space-separated scopes besides "openid"
//                         default "api:read api:write tools:search tools:deploy"
//   SIGN_IN_CLIENTS       (optional) JSON array of static clients for the authorization
//                         code flow; when set, people sign in through the library's
//                         development login pages (any login, any password), and the
//                         ID token names them: sub, preferred_username = the login,
//                         email = <login>@example.test, groups = SIGN_IN_GROUPS[login]
//   SIGN_IN_GROUPS        (optional) JSON object: login -> the teams its `groups` claim lists
//
// Prints exactly one line on stdout when ready: "listening <issuer>".
// All library notices/warnings go to stderr. Exits when stdin closes, so the
// spawning test process must give it a pipe for stdin (not /dev/null).

import Provider from 'oidc-provider';

// oidc-provider prints NOTICE lines with console.info (stdout); keep stdout
// reserved for the readiness line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

function fail(msg) {
  process.stderr.write(`server.mjs: ${msg}\n`);
  process.exit(2);
}

const portRaw = process.env.PORT;
if (!portRaw || !/^[0-9]+$/.test(portRaw) || Number(portRaw) < 1 || Number(portRaw) > 65535) {
  fail('PORT env var is required (1-65535)');
}
const port = Number(portRaw);

const initialAccessToken = process.env.INITIAL_ACCESS_TOKEN;
if (!initialAccessToken) {
  fail('INITIAL_ACCESS_TOKEN env var is required');
}

const extraScopes = (process.env.SCOPES ?? 'api:read api:write tools:search tools:deploy')
  .split(' ')
  .filter(Boolean);

const issuer = `http://127.0.0.1:${port}`;

const signInClients = process.env.SIGN_IN_CLIENTS ? JSON.parse(process.env.SIGN_IN_CLIENTS) : [];
const signInGroups = process.env.SIGN_IN_GROUPS ? JSON.parse(process.env.SIGN_IN_GROUPS) : {};
const signIn = signInClients.length > 0;

const provider = new Provider(issuer, {
  // Default in-memory adapter; static clients only for sign-in.
  clients: signInClients,
  scopes: ['openid', ...extraScopes, ...(signIn ? ['profile', 'email'] : [])],
  claims: { openid: ['sub'], profile: ['preferred_username', 'groups'], email: ['email'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, email: `${id}@example.test`, groups: signInGroups[id] ?? [] };
      },
    };
  },
  features: {
    devInteractions: { enabled: signIn },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    registration: {
      enabled: true,
      initialAccessToken, // string => static bearer value required on POST /reg
    },
    registrationManagement: {
      enabled: true,
      rotateRegistrationAccessToken: false,
    },
  },
  // Explicit values equal to the library defaults (silences "SHOULD change" notices).
  ttl: {
    ClientCredentials: 600,
  },
});

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`server_error: ${err?.stack ?? err}\n`);
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
server.on('error', (err) => fail(`listen failed: ${err.message}`));

// Die with the parent: exit as soon as stdin reaches EOF / is closed.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
