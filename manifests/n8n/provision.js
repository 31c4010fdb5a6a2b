// Provisions a tenant's n8n before it starts (the operator runs this as an init container of the
// same n8n image, with the n8n data volume mounted): the worker token as an n8n credential, the
// shipped worker workflow (unpublished first, then imported), and the workflow published (active). Every start does it again, so a
// new shipped workflow replaces the old one and a deleted or deactivated one comes back; both
// have fixed ids, and nothing else in n8n is touched. No shell in the image: Node.js runs it.
//
// First it checks the encryption key: the operator records the key's fingerprint (it never
// reads the key) and passes it here; a different key stops everything before n8n starts, since
// n8n could decrypt none of its credentials with it. The outcome goes to the termination
// message, which the operator reads from the pod's status.
'use strict';
const { spawnSync } = require('child_process');
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

// Runs an n8n CLI command, its output passed through; a failure carries n8n's own last error
// line (the whole output is in the container's log).
function n8n(...args) {
  const started = Date.now();
  const run = spawnSync('n8n', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  process.stdout.write(run.stdout || '');
  process.stderr.write(run.stderr || '');
  if (run.error) throw new Error(`n8n ${args[0]}: ${run.error.message}`);
  const output = `${run.stdout || ''}\n${run.stderr || ''}`;
  if (run.status !== 0) {
    const lines = output.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('at '));
    const cause = lines.reverse().find((l) => /error/i.test(l)) || lines[0] || `exit code ${run.status}`;
    const error = new Error(`n8n ${args[0]} failed: ${cause}`);
    error.output = output;
    throw error;
  }
  console.log(`flomastr: n8n ${args[0]} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

// Deactivates the shipped workflow so that importing it again is allowed (n8n's import refuses
// to deactivate it under the CLI's user); a first start has none to deactivate.
function unpublish(id) {
  try {
    n8n('unpublish:workflow', `--id=${id}`);
  } catch (error) {
    if (!String(error.output).includes(`Workflow "${id}" not found`)) throw error;
    console.log(`flomastr: workflow ${id} not there yet`);
  }
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
  unpublish(WORKFLOW_ID);
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
