package dbfake

import (
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/sql"
)

// RealisticTime makes the fake keep Databricks' relative latencies, scaled down so that a rotation
// takes seconds: a cluster terminates in 1-10 minutes and starts in 3-7, a warehouse or pipeline
// stops in 1-3 and starts in 2-6, a pool fills in 3-7, a workspace update lands in 5-20. Each
// transition draws its own duration, so a change lands at a random moment between two checks of
// the rotator, and a check regularly sees a cluster still TERMINATING or a workspace PROVISIONING.
//
// With UserRestarts, people keep working during the rotation: once per resource, a cluster started
// by hand (UI or API) or a classic warehouse that was stopped is, with probability one half, started
// again by "a user" within two minutes of coming to rest (a notebook re-attached, a JDBC client
// auto-resuming the warehouse).
//
// Draws come from one generator seeded with Seed, in the order the fake handles calls: the same seed
// and the same sequence of calls give the same latencies.
type RealisticTime struct {
	// Minute is how long one Databricks minute lasts in the fake (20ms: a 10-minute termination takes 200ms).
	Minute time.Duration
	// Seed seeds the generator.
	Seed uint64
	// UserRestarts lets users start compute again mid-rotation.
	UserRestarts bool
}

// transition is a kind of state change with its latency range in Databricks minutes.
type transition struct{ min, max float64 }

var (
	clusterTerminate    = transition{1, 10}
	clusterStart        = transition{3, 7}
	warehouseStop       = transition{1, 3}
	warehouseStart      = transition{2, 6}
	pipelineStop        = transition{1, 3}
	pipelineStart       = transition{3, 7}
	poolFill            = transition{3, 7}
	workspaceUpdateTime = transition{5, 20}
	userRestartWithin   = transition{0, 2}
)

// delay is how long a transition takes: TransitionDelay, or a draw in realistic mode. Callers hold mu.
func (s *Server) delay(tr transition) time.Duration {
	r := s.opts.Realistic
	if r == nil {
		if tr == workspaceUpdateTime {
			return s.opts.WorkspaceUpdateDelay
		}
		return s.opts.TransitionDelay
	}
	minutes := tr.min + s.rng.Float64()*(tr.max-tr.min)
	return time.Duration(minutes * float64(r.Minute))
}

// userMayRestart decides, once per resource, whether a user starts it again after it came to rest,
// and when. Callers hold mu.
func (s *Server) userMayRestart(acted *bool) (time.Duration, bool) {
	r := s.opts.Realistic
	if r == nil || !r.UserRestarts || *acted {
		return 0, false
	}
	*acted = true
	if s.rng.IntN(2) == 0 {
		return 0, false
	}
	return s.delay(userRestartWithin), true
}

// userRestartsCluster schedules a user's start of a cluster terminated at terminated. It is on the
// cluster's timeline, so any later action on the cluster (the rotator starting it) cancels it.
func (s *Server) userRestartsCluster(rec *clusterRec, terminated time.Time) {
	if rec.d.ClusterSource != compute.ClusterSourceUi && rec.d.ClusterSource != compute.ClusterSourceApi {
		return
	}
	after, ok := s.userMayRestart(&rec.userActed)
	if !ok {
		return
	}
	rec.tl.schedule(terminated.Add(after), func(at time.Time) {
		if rec.d.State == compute.StateTerminated {
			s.log.Info("dbfake: a user starts the cluster again", "cluster_id", rec.d.ClusterId)
			s.startCluster(rec, at, "")
		}
	})
}

// userResumesWarehouse schedules a client's auto-resume of a classic warehouse stopped at stopped.
func (s *Server) userResumesWarehouse(w *warehouseRec, stopped time.Time) {
	if w.w.EnableServerlessCompute {
		return
	}
	after, ok := s.userMayRestart(&w.userActed)
	if !ok {
		return
	}
	w.tl.schedule(stopped.Add(after), func(at time.Time) {
		if w.w.State == sql.StateStopped {
			s.log.Info("dbfake: a client resumes the warehouse", "warehouse_id", w.w.Id)
			s.resumeWarehouse(w, at)
		}
	})
}
