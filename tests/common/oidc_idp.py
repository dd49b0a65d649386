"""An OpenID Connect identity provider for the console's single sign-on tests: discovery,
an authorization endpoint that signs in one configured user at once, a token endpoint
that checks the client, the redirect URI and the PKCE verifier (S256) and answers an ID
token signed RS256 with a key made by `openssl` at start, and the JWKS with that key.
Only the standard library and the `openssl` command.

    python oidc_idp.py CLIENT_ID CLIENT_SECRET CLAIMS_JSON

Prints `{"port": N}` once listening. Each code is exchanged at most once. The claims are
merged into every ID token (`sub`, `team`, `switchyard_role`, ...).
"""

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

client_id, client_secret, claims_json = sys.argv[1:4]
user_claims = json.loads(claims_json)

workdir = tempfile.mkdtemp()
key_file = os.path.join(workdir, "key.pem")
subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key_file],
               check=True, capture_output=True)
modulus = subprocess.run(["openssl", "rsa", "-in", key_file, "-noout", "-modulus"], check=True,
                         capture_output=True, text=True).stdout.strip().split("=", 1)[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JWKS = {"keys": [{"kty": "RSA", "kid": "idp-1", "use": "sig", "alg": "RS256",
                  "n": b64url(bytes.fromhex(modulus)), "e": b64url((65537).to_bytes(3, "big"))}]}


def sign(claims):
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "idp-1"}).encode())
    body = b64url(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_file], input=signing_input, check=True,
                         capture_output=True).stdout
    return f"{head}.{body}.{b64url(sig)}"


codes = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def issuer(self):
        return f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/.well-known/openid-configuration":
            i = self.issuer()
            return self.answer(200, {"issuer": i, "authorization_endpoint": f"{i}/authorize",
                                     "token_endpoint": f"{i}/token", "jwks_uri": f"{i}/jwks",
                                     "code_challenge_methods_supported": ["S256"]})
        if url.path == "/jwks":
            return self.answer(200, JWKS)
        if url.path == "/authorize":
            if q.get("client_id") != client_id or q.get("response_type") != "code" \
                    or q.get("code_challenge_method") != "S256" or "openid" not in q.get("scope", "").split():
                return self.answer(400, {"error": "invalid_request"})
            code = secrets.token_urlsafe(24)
            with lock:
                codes[code] = {"challenge": q["code_challenge"], "nonce": q.get("nonce"),
                               "redirect_uri": q["redirect_uri"]}
            back = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
            self.send_response(302)
            self.send_header("location", back)
            self.send_header("content-length", "0")
            self.end_headers()
            return None
        return self.answer(404, {"error": "not_found"})

    def do_POST(self):
        if self.path != "/token":
            return self.answer(404, {"error": "not_found"})
        length = int(self.headers.get("content-length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        if form.get("client_id") != client_id or form.get("client_secret") != client_secret:
            return self.answer(401, {"error": "invalid_client"})
        with lock:
            grant = codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        if form.get("grant_type") != "authorization_code" or grant is None \
                or grant["redirect_uri"] != form.get("redirect_uri") \
                or b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return self.answer(400, {"error": "invalid_grant"})
        now = int(time.time())
        claims = {"iss": self.issuer(), "aud": client_id, "iat": now, "exp": now + 300, "nonce": grant["nonce"]}
        claims.update(user_claims)
        return self.answer(200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                 "expires_in": 300, "id_token": sign(claims)})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_port}), flush=True)
server.serve_forever()
