// Verifies a Sigstore bundle with a public key, using sigstore-js
// (@sigstore/bundle to parse and validate, @sigstore/verify to check), offline:
// an empty trusted root, the key found by its hint, no transparency log,
// certificate-transparency log or timestamp required.
//
//   node verify.cjs BUNDLE.json KEY.pub IMAGE_DIGEST [ARTIFACT]
//
// A DSSE bundle must hold an in-toto statement whose subject digest is
// IMAGE_DIGEST; a message signature is checked over ARTIFACT (the manifest
// bytes), whose digest must be IMAGE_DIGEST. Prints one JSON line; exit 0
// when it verifies, 1 with the reason on stderr when not.
'use strict';
const fs = require('node:fs');
const crypto = require('node:crypto');
const { bundleFromJSON } = require('@sigstore/bundle');
const { toSignedEntity, toTrustMaterial, Verifier } = require('@sigstore/verify');

function main([bundlePath, keyPath, imageDigest, artifactPath]) {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const spki = crypto.createPublicKey(fs.readFileSync(keyPath)).export({ type: 'spki', format: 'der' });
  // cosign's hint: base64 of the SHA-256 of the SPKI DER. Only a bundle
  // naming the key this way finds it.
  const hint = crypto.createHash('sha256').update(spki).digest('base64');
  const trustedRoot = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
  const keys = { [hint]: { rawBytes: spki, validFor: { start: new Date(0) } } };
  const verifier = new Verifier(toTrustMaterial(trustedRoot, keys), {
    tlogThreshold: 0,
    ctlogThreshold: 0,
    timestampThreshold: 0,
  });
  const [algorithm, hex] = imageDigest.split(':');
  let artifact;
  if (bundle.content.$case === 'messageSignature') {
    if (!artifactPath) throw new Error('a message signature is checked over the artifact: give ARTIFACT');
    artifact = fs.readFileSync(artifactPath);
    const actual = crypto.createHash(algorithm).update(artifact).digest('hex');
    if (actual !== hex) throw new Error(`ARTIFACT hashes to ${algorithm}:${actual}, not ${imageDigest}`);
  }
  verifier.verify(toSignedEntity(bundle, artifact));
  const result = { mediaType: bundle.mediaType, content: bundle.content.$case, hint };
  if (bundle.content.$case === 'dsseEnvelope') {
    const env = bundle.content.dsseEnvelope;
    if (env.payloadType !== 'application/vnd.in-toto+json') throw new Error(`payload type ${env.payloadType}`);
    const statement = JSON.parse(env.payload.toString('utf8'));
    if (statement._type !== 'https://in-toto.io/Statement/v1') throw new Error(`statement type ${statement._type}`);
    if (!statement.subject.some((s) => s.digest && s.digest[algorithm] === hex)) {
      throw new Error(`no statement subject has digest ${imageDigest}: ${JSON.stringify(statement.subject)}`);
    }
    result.predicateType = statement.predicateType;
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

try {
  main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`sigstore-js: ${e.code ? e.code + ': ' : ''}${e.message}\n`);
  process.exit(1);
}
