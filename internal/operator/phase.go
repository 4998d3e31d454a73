package operator

// Phases name what an operator cares about while a rotation runs: above all, whether compute is down.
const (
	phaseValidating  = "validating"
	phaseRegistering = "registering key"
	phasePlanning    = "planning"
	phaseStopping    = "stopping compute"
	phaseUpdating    = "updating workspace"
	phaseVerifying   = "verifying"
	phaseQuietWindow = "quiet window"
	phaseRestarting  = "restarting"
	phaseRestoring   = "restarting after failure"
	phaseReporting   = "reporting"
	// Change control: nothing is locked or stopped in these phases.
	phasePolicy   = "checking policy"
	phaseApproval = "awaiting approval"
	phaseWindow   = "waiting for maintenance window"
)

// phases maps every state of statemachine/rotation.asl.json and workspace-rotation.asl.json to its phase; a test holds the two
// together, so a state added to the definition without a phase fails the build.
var phases = map[string]string{
	"CheckPolicy":             phasePolicy,
	"ApprovalRequired?":       phasePolicy,
	"PlanForApproval":         phaseApproval,
	"InventoryForApproval":    phaseApproval,
	"ApprovalInventory":       phaseApproval,
	"ApprovalPlanned":         phaseApproval,
	"ApprovalInventoryFailed": phaseApproval,
	"ApprovalTimeout":         phaseApproval,
	"AwaitApproval":           phaseApproval,
	"ApprovalTimedOut":        phaseReporting,
	"RecheckPolicy":           phasePolicy,
	"WindowWait?":             phasePolicy,
	"BaselineBeforeWindow?":   phaseWindow,
	"PlanBeforeWindow":        phaseWindow,
	"AnnounceWindowWait":      phaseWindow,
	"WaitForWindow":           phaseWindow,
	"KeepBaselineKeys?":       phaseValidating,
	"KeepBaselineKeys":        phaseValidating,
	"Superseded?":             phaseValidating,
	"CheckNotSuperseded":      phaseValidating,

	"LockWorkspaces": phaseValidating,
	"Validate":       phaseValidating,
	"DryRun?":        phaseValidating,
	"PreparePlan":    phasePlanning,

	"PlanWorkspaces":    phasePlanning,
	"PlanAlreadyOnKey?": phasePlanning,
	"PlanInventory":     phasePlanning,
	"BuildPlanReport":   phaseReporting,
	"PublishPlan":       phaseReporting,
	"Planned":           phaseReporting,
	"PlanFailed":        phaseReporting,
	"PlanDone":          phaseReporting,

	"RegisterKeyConfig": phaseRegistering,
	"PrepareRotation":   phaseRegistering,

	// The request's Map starts one child execution per workspace (statemachine/workspace-rotation.asl.json);
	// the states below it are the child's, which run in the child's own history.
	"RotateWorkspaces": phaseStopping,
	"RotateWorkspace":  phaseStopping,
	"ChildFailed":      phaseReporting,
	"AlreadyOnKey?":    phaseStopping,
	"Unchanged":        phaseReporting,
	"TakeInventory":    phaseStopping,
	"StopCompute":      phaseStopping,
	"StopMore?":        phaseStopping,
	"WaitForStop":      phaseStopping,
	"CheckStopped":     phaseStopping,
	"AllStopped?":      phaseStopping,
	"WaitForStopAgain": phaseStopping,

	"PatchWorkspace": phaseUpdating,

	"WaitForWorkspace":      phaseVerifying,
	"CheckWorkspace":        phaseVerifying,
	"ConfirmKey":            phaseVerifying,
	"OnNewKey?":             phaseVerifying,
	"WaitForWorkspaceAgain": phaseVerifying,
	"WaitForUpdateToEnd":    phaseVerifying,
	"QuietWindow?":          phaseVerifying,

	"QuietWindow":              phaseQuietWindow,
	"QuietWindowOver?":         phaseQuietWindow,
	"WaitInQuietWindow":        phaseQuietWindow,
	"QuietWindowWithoutChecks": phaseQuietWindow,

	"RestartCompute":      phaseRestarting,
	"RestartMore?":        phaseRestarting,
	"WaitForRestart":      phaseRestarting,
	"CheckRunning":        phaseRestarting,
	"AllRunning?":         phaseRestarting,
	"WaitForRestartAgain": phaseRestarting,

	"Compensate":               phaseRestoring,
	"CompensateMore?":          phaseRestoring,
	"WaitForCompensation":      phaseRestoring,
	"CheckCompensation":        phaseRestoring,
	"Compensated?":             phaseRestoring,
	"WaitForCompensationAgain": phaseRestoring,

	"BuildSuccessReport":            phaseReporting,
	"PublishSuccess":                phaseReporting,
	"AllBack?":                      phaseReporting,
	"Rotated":                       phaseReporting,
	"RotatedUnreported":             phaseReporting,
	"FailedUnreported":              phaseReporting,
	"LockLost":                      phaseReporting,
	"DescribeOutcome":               phaseReporting,
	"FailedHow?":                    phaseReporting,
	"FailedWithoutDescription?":     phaseReporting,
	"RotationFailedUndescribed":     phaseReporting,
	"ComputeNotRestoredUndescribed": phaseReporting,
	"RotatedComputeDown":            phaseReporting,
	"BuildFailureReport":            phaseReporting,
	"PublishFailure":                phaseReporting,
	"PublishRawFailure":             phaseReporting,
	"Failed":                        phaseReporting,
	"CollectOutcomes":               phaseReporting,
	"Summarize":                     phaseReporting,
	"AnyRotated?":                   phaseReporting,
	"ScheduleRetirementReminder":    phaseReporting,
	"AnyFailed?":                    phaseReporting,
	"Done":                          phaseReporting,
	"RotationFailed":                phaseReporting,
	"BuildRejectionReport":          phaseReporting,
	"PublishRejection":              phaseReporting,
	"Rejected":                      phaseReporting,
	"ReleaseLocks":                  phaseReporting,
	"ReleaseLocksAfterPlan":         phaseReporting,
	"ReleaseLocksAfterError":        phaseReporting,
	"ReleaseLocksAfterRejection":    phaseReporting,
	"MapFailed":                     phaseReporting,
	"ComputeNotRestored":            phaseReporting,
}

// phaseOf is the phase of a state; a state the table does not know shows without one.
func phaseOf(state string) string { return phases[state] }
