package jobs

// Step names one stage of the device pipeline.
type Step string

// The pipeline's steps, in order.
const (
	StepIdentify  Step = "identify"
	StepPreflight Step = "preflight"
	StepFlash     Step = "flash"
	StepVerify    Step = "verify"
	StepActivate  Step = "activate"
	StepLock      Step = "lock"
	StepLabel     Step = "label"
	StepDone      Step = "done"
)

// Steps lists the pipeline's steps in order.
var Steps = []Step{StepIdentify, StepPreflight, StepFlash, StepVerify, StepActivate, StepLock, StepLabel, StepDone}

// StepNames returns the step names as strings, in order.
func StepNames() []string {
	s := make([]string, len(Steps))
	for i, st := range Steps {
		s[i] = string(st)
	}
	return s
}
