"""Writes tests/fixtures/rsa-odd-signatures.json: RS*/PS* signatures by the
test keys whose modulus ring cannot sign with (rsa-2049: unequal primes;
rsa-2080: not a multiple of 512 bits), for tests/rsa_fast.rs. Needs Python
`cryptography`. Run from the repository root."""

import base64
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
out = {"keys": []}
for name in ["rsa-2049.pem", "rsa-2080.pem"]:
    with open(f"tests/keys/{name}", "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    pub = key.public_key().public_numbers()
    entry = {
        "name": name,
        "n": b64(pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")),
        "e": b64(pub.e.to_bytes(3, "big")),
        "sigs": [],
    }
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
        h = HASHES[alg[2:]]
        if alg.startswith("RS"):
            pad = padding.PKCS1v15()
        else:
            pad = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        for i in range(2):
            msg = f"eyJhbGciOiJ{alg}In0.message-{i}".encode()
            entry["sigs"].append({"alg": alg, "msg": msg.decode(), "sig": b64(key.sign(msg, pad, h))})
    out["keys"].append(entry)
with open("tests/fixtures/rsa-odd-signatures.json", "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
