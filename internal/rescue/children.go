package rescue

import (
	"context"
	"crypto/md5"
	"encoding/hex"
)

// ChildName is the name the request's RotateWorkspace state gives a workspace's child execution
// (statemachine/rotation.asl.json: States.Format('{}-{}', workspace id, States.Hash(execution, 'MD5'))).
func ChildName(requestName, workspaceID string) string {
	sum := md5.Sum([]byte(requestName))
	return workspaceID + "-" + hex.EncodeToString(sum[:])
}

// followChildren adds to the request's history what its children did that the request's own
// history cannot show: whether a workspace's child entered PatchWorkspace, and its latest run. A
// PATCH sent by a child leaves the previous key in use for 24 hours, so the retirement reminder
// is due even when the request ended before the child reported. A child whose history cannot be
// read is left as the request saw it.
func (h *Handler) followChildren(ctx context.Context, hist *history) {
	machine := h.Config.WorkspaceRotationStateMachineARN
	if machine == "" {
		return
	}
	prefix := executionPrefix(machine)
	for _, id := range hist.order {
		it := hist.iterations[id]
		if it == nil || !it.entered[stateRotateWorkspace] || it.outcome != "" {
			continue
		}
		name := ChildName(hist.execution, id)
		child, err := readHistory(ctx, h.History, prefix+name, name)
		if err != nil {
			continue
		}
		if ci := child.iterations[id]; ci != nil {
			if ci.entered[statePatchWorkspace] {
				it.entered[statePatchWorkspace] = true
			}
			if ci.run != "" {
				it.run = ci.run
			}
		}
	}
}
