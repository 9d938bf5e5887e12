// Writes a Sigstore bundle with sigstore-js's bundle builders
// (@sigstore/sign), signing with a local key through Node's crypto, no
// witness (no transparency log, no timestamp authority).
//
//   node sign.cjs dsse    KEY.pem IMAGE_DIGEST > bundle.json
//   node sign.cjs message KEY.pem ARTIFACT     > bundle.json
//
// `dsse`: the in-toto statement `cosign sign` signs for an image (subject:
// IMAGE_DIGEST, predicate type https://sigstore.dev/cosign/sign/v1), in a
// DSSE envelope whose PAE sigstore-js computes. `message`: a message
// signature over ARTIFACT (an image manifest's bytes).
'use strict';
const fs = require('node:fs');
const crypto = require('node:crypto');
const { bundleToJSON } = require('@sigstore/bundle');
const { DSSEBundleBuilder, MessageSignatureBundleBuilder } = require('@sigstore/sign');

async function main([kind, keyPath, subject]) {
  const privateKey = crypto.createPrivateKey(fs.readFileSync(keyPath));
  const publicKey = crypto.createPublicKey(privateKey);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const signer = {
    sign: async (data) => ({
      signature: crypto.sign('sha256', data, privateKey), // ASN.1 DER ECDSA
      key: {
        $case: 'publicKey',
        publicKey: publicKey.export({ type: 'spki', format: 'pem' }),
        hint: crypto.createHash('sha256').update(spki).digest('base64'),
      },
    }),
  };
  let bundle;
  if (kind === 'dsse') {
    const [algorithm, hex] = subject.split(':');
    const statement = {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ digest: { [algorithm]: hex } }],
      predicateType: 'https://sigstore.dev/cosign/sign/v1',
      predicate: {},
    };
    bundle = await new DSSEBundleBuilder({ signer, witnesses: [] }).create({
      data: Buffer.from(JSON.stringify(statement)),
      type: 'application/vnd.in-toto+json',
    });
  } else if (kind === 'message') {
    bundle = await new MessageSignatureBundleBuilder({ signer, witnesses: [] }).create({
      data: fs.readFileSync(subject),
    });
  } else {
    throw new Error(`unknown kind ${kind}: dsse or message`);
  }
  process.stdout.write(JSON.stringify(bundleToJSON(bundle)) + '\n');
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`sigstore-js: ${e.message}\n`);
  process.exit(1);
});
