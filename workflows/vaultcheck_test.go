package workflows

import (
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/vault"
)

// vault repair --secondary runs the heal of the secondary, not the repair
// of the primary's index, and returns its report.
func TestRepairVaultSecondaryHeals(t *testing.T) {
	env := newEnv(t)
	never(env, vaultAct.RepairVault)
	heal := vault.HealReport{Objects: 53, DamagedCount: 2, Healed: 1,
		Damaged: []vault.Conflict{{Key: "packs/aa/aa", Primary: "intact", Secondary: "damaged: x", Replaced: true}, {Key: "recoverypoints/vm/1", Primary: "damaged: y", Secondary: "damaged: z", Note: "the primary's copy is damaged too: nothing copied"}}}
	env.OnActivity(vaultAct.HealSecondary, mock.Anything, activities.RepairVaultInput{Secondary: true}).Return(heal, nil).Once()
	env.ExecuteWorkflow(RepairVault, RepairVaultInput{Secondary: true})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RepairVaultResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.NotNil(t, res.Secondary)
	require.Equal(t, heal, *res.Secondary)
	require.Equal(t, 1, res.Secondary.Kept())
	assertNotCalled(t, env, "RepairVault")
}

// Without Secondary the repair of the primary runs, as before.
func TestRepairVaultPrimary(t *testing.T) {
	env := newEnv(t)
	never(env, vaultAct.HealSecondary)
	env.OnActivity(vaultAct.RepairVault, mock.Anything, mock.Anything).Return(vault.RepairReport{Packs: 7}, nil).Once()
	env.ExecuteWorkflow(RepairVault, RepairVaultInput{})
	require.NoError(t, env.GetWorkflowError())
	var res RepairVaultResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Nil(t, res.Secondary)
	require.Equal(t, 7, res.Packs)
	assertNotCalled(t, env, "HealSecondary")
}
