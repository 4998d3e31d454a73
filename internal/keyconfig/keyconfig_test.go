package keyconfig_test

import (
	"context"
	"testing"

	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyconfig"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

const keyARN = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

func newTask(t *testing.T) (*dbfake.Server, *keyconfig.Task) {
	fake := faketest.Start(t, dbfake.Options{})
	account, err := faketest.Factory(fake).Account()
	require.NoError(t, err)
	return fake, &keyconfig.Task{Account: account}
}

func TestRegisteringTwiceCreatesOneKeyConfiguration(t *testing.T) {
	fake, task := newTask(t)
	in := keyconfig.Input{Plan: rotation.Plan{KeyARN: keyARN, KeyAlias: "alias/databricks/prod", KeyRegion: "us-west-2", UseCases: []string{"MANAGED_SERVICES"}}}

	first, err := task.Handle(context.Background(), in)
	require.NoError(t, err)
	assert.True(t, first.Created)
	second, err := task.Handle(context.Background(), in)
	require.NoError(t, err)
	assert.False(t, second.Created)
	assert.Equal(t, first.KeyConfigID, second.KeyConfigID)

	configs := fake.KeyConfigs()
	require.Len(t, configs, 1)
	assert.Equal(t, "alias/databricks/prod", configs[0].AwsKeyInfo.KeyAlias)
	assert.Equal(t, "us-west-2", configs[0].AwsKeyInfo.KeyRegion)
}

func TestAStorageKeyThatMustNotEncryptVolumesSaysSoOnTheWire(t *testing.T) {
	fake, task := newTask(t)
	in := keyconfig.Input{Plan: rotation.Plan{KeyARN: keyARN, KeyRegion: "us-west-2", UseCases: []string{"MANAGED_SERVICES", "STORAGE"}, ReuseKeyForClusterVolumes: false}}
	_, err := task.Handle(context.Background(), in)
	require.NoError(t, err)
	configs := fake.KeyConfigs()
	require.Len(t, configs, 1)
	assert.False(t, configs[0].AwsKeyInfo.ReuseKeyForClusterVolumes, "omitting false would let Databricks default it to true")

	// The same key for managed services only is a different configuration.
	in.Plan.UseCases = []string{"MANAGED_SERVICES"}
	got, err := task.Handle(context.Background(), in)
	require.NoError(t, err)
	assert.True(t, got.Created)
	assert.Len(t, fake.KeyConfigs(), 2)
}

func TestARollbackReusesThePreviousConfigurationEvenWithWiderUseCases(t *testing.T) {
	fake, task := newTask(t)
	previous := fake.AddKeyConfig(provisioning.CustomerManagedKey{UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES", "STORAGE"},
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: keyARN, KeyRegion: "us-west-2", ReuseKeyForClusterVolumes: true}})
	in := keyconfig.Input{Plan: rotation.Plan{KeyARN: keyARN, KeyRegion: "us-west-2", UseCases: []string{"MANAGED_SERVICES"}, RollbackKeyConfigID: previous}}

	got, err := task.Handle(context.Background(), in)
	require.NoError(t, err)
	assert.Equal(t, rotation.KeyConfig{KeyConfigID: previous}, got)
	assert.Len(t, fake.KeyConfigs(), 1, "no second configuration for the previous key")
}
