// An OpenID Connect provider for the console's single sign-on in the browser journey:
// panva's oidc-provider (OpenID Certified), from the npm registry, with its development
// login and consent pages (any login name signs in). One client, PKCE required; the ID
// token carries the user's claims (`team`, `switchyard_role`).
//
//   node oidc_provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI CLAIMS_JSON
//
// Prints `{"port": N}` once listening.
import Provider from "oidc-provider";


const [port, clientId, clientSecret, redirectUri, claimsJson] = process.argv.slice(2);
const extra = JSON.parse(claimsJson);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    response_types: ["code"],
    grant_types: ["authorization_code"],
    token_endpoint_auth_method: "client_secret_post",
  }],
  pkce: { required: () => true },
  claims: { openid: ["sub", ...Object.keys(extra)] },
  conformIdTokenClaims: false,
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, ...extra }) }),
  cookies: { keys: ["switchyard-test-idp"] },
});
provider.listen(Number(port), () => console.log(JSON.stringify({ port: Number(port) })));
