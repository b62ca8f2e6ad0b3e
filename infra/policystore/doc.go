// Package policystore keeps policies and protection records in a vault and
// applies the rules that guard them where they are written:
//
//   - one default-policy rule: the policy named policy.DefaultName always
//     exists, as policy.Default() until a record overrides it
//     (policy.InForce);
//   - the protected-VM limit: a new protection is counted before and after
//     its record is written, and steps back when a protect that ran at the
//     same moment made it one too many (Store.Protect);
//   - an immutable vault refuses a policy update that shortens retention
//     (Store.UpdatePolicy, policy.ShorterRetention).
//
// It reads and writes only through the vault's record methods (GetRecord,
// PutRecord, ListRecords, DeleteRecord) and knows nothing of Temporal: the
// activities of the protect and policy workflows and the CLI's read-only
// commands both use it.
package policystore
