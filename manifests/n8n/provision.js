// Provisions a tenant's n8n before it starts (the operator runs this as an init container of the
// same n8n image, with the n8n data volume mounted): the worker token as an n8n credential, the
// shipped worker workflow, and the workflow published (active). Every start does it again, so a
// new shipped workflow replaces the old one and a deleted or deactivated one comes back; both
// have fixed ids, and nothing else in n8n is touched. No shell in the image: Node.js runs it.
//
// First it checks the encryption key: the operator records the key's fingerprint (it never
// reads the key) and passes it here; a different key stops everything before n8n starts, since
// n8n could decrypt none of its credentials with it. The outcome goes to the termination
// message, which the operator reads from the pod's status.
'use strict';
const { execFileSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const TERMINATION_LOG = '/dev/termination-log';

function report(message) {
  try {
    fs.writeFileSync(TERMINATION_LOG, message);
  } catch (error) {
    console.error(`flomastr: cannot write ${TERMINATION_LOG}: ${error.message}`);
  }
}

class Refusal extends Error {}

// sha256: and the first 16 hex digits of the key's SHA-256 (src/operator/encryption.rs).
function fingerprint(key) {
  return 'sha256:' + crypto.createHash('sha256').update(key).digest('hex').slice(0, 16);
}

function checkKey() {
  const key = process.env.N8N_ENCRYPTION_KEY || '';
  if (!key) throw new Refusal('EncryptionKeyMissing: N8N_ENCRYPTION_KEY is empty; restore the Secret n8n-encryption');
  const found = fingerprint(key);
  const expected = process.env.FLOMASTR_ENCRYPTION_KEY_FINGERPRINT;
  if (expected && expected !== found) {
    throw new Refusal(`EncryptionKeyChanged: the Secret n8n-encryption holds a key with fingerprint ${found}, ` +
      `but this n8n's data is encrypted with ${expected}: restore that key (n8n is not started with another)`);
  }
  return found;
}

const WORKFLOW = process.env.FLOMASTR_WORKFLOW_FILE;
const WORKFLOW_ID = process.env.FLOMASTR_WORKFLOW_ID;
const CREDENTIAL_ID = process.env.FLOMASTR_CREDENTIAL_ID;
const SCRATCH = process.env.FLOMASTR_SCRATCH_DIR;

function n8n(...args) {
  const started = Date.now();
  execFileSync('n8n', args, { stdio: 'inherit' });
  console.log(`flomastr: n8n ${args[0]} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

function main() {
  const found = checkKey();
  for (const [name, value] of Object.entries({ WORKFLOW, WORKFLOW_ID, CREDENTIAL_ID, SCRATCH })) {
    if (!value) throw new Error(`provision.js: ${name} is not set`);
  }
  const token = process.env.FLOMASTR_WORKER_TOKEN;
  if (!token) throw new Error('provision.js: FLOMASTR_WORKER_TOKEN is not set');
  // The token goes to n8n in plain JSON only in a private memory-backed directory, and is
  // removed at once; n8n stores it encrypted with the tenant's encryption key.
  const credentials = path.join(SCRATCH, 'credentials.json');
  fs.writeFileSync(credentials, JSON.stringify([{
    id: CREDENTIAL_ID,
    name: 'flomastr worker token',
    type: 'httpHeaderAuth',
    data: { name: 'Authorization', value: `Bearer ${token}` },
  }]), { mode: 0o600 });
  try {
    n8n('import:credentials', `--input=${credentials}`);
  } finally {
    fs.rmSync(credentials, { force: true });
  }
  n8n('import:workflow', `--input=${WORKFLOW}`);
  n8n('publish:workflow', `--id=${WORKFLOW_ID}`);
  return found;
}

try {
  report(`fingerprint ${main()}`);
} catch (error) {
  console.error(`flomastr: provisioning n8n failed: ${error.message}`);
  report(error instanceof Refusal ? error.message : `ProvisioningFailed: ${error.message}`.slice(0, 1000));
  process.exit(1);
}
