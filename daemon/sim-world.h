/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The simulator's world: a host and its guests in memory, on a virtual clock (microseconds
 * since the world began), stepped in fixed sub-steps. Nothing here does I/O once the scenario
 * is loaded, and nothing is random: the same scenario gives the same trajectory.
 *
 * What a guest is made of, as the real tiny guests here showed (tests/e2e/README.md, "The
 * guests, as measured"): a workload's anonymous memory following a schedule, the kernel's own
 * use (a base plus a share of what the workload holds), page cache that fills free memory and
 * is reclaimed before anything dies, and what is left, MemFree. A balloon moves toward its
 * target at a finite speed; it cannot take memory in use. The guest samples its stats once
 * per stats period; libvirt reports the balloon's size ~1 s late; after a balloon change the
 * guest's reported figures stand still for a while as its stamp advances. Below the OOM point
 * the workload is killed and frees what it held, unless autodeflate gives the balloon back.
 *
 * Every constant is a SimModel parameter (sim_model_params[]), named as in the scenario
 * file's [Model] section, with the measured value as its default. Sizes in the model are MiB
 * (doubles); readings handed out are KiB.
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_USEC_PER_SEC UINT64_C(1000000)
#define SIM_UUID_STRLEN 37

typedef struct SimModel {
        double kernel_base_mib;        /* the kernel and /init at rest */
        double kernel_growth;          /* kernel use per MiB the workload holds */
        double reserve_mib;            /* MemAvailable = MemFree + cache - this (>= 0) */
        double reclaim_free_mib;       /* page cache is reclaimed to keep MemFree above this */
        double oom_free_mib;           /* below this MemFree the workload is killed */
        double balloon_floor_free_mib; /* an inflating balloon stalls at this MemFree */
        double inflate_mib_s;          /* balloon speed, shrinking the guest */
        double deflate_mib_s;          /* balloon speed, growing the guest */
        double autodeflate_mib_s;      /* how fast a guest under pressure deflates itself */
        double touch_mib_s;            /* how fast the workload can touch new memory */
        double actual_throttle_s;      /* libvirt's balloon.current changes at most this often */
        double freeze_s;               /* reported figures stand still this long after a change */
        bool freeze_on_deflate;        /* ... after the balloon grows the guest */
        bool freeze_on_inflate;        /* ... after the balloon shrinks the guest */
        bool freeze_after_change;      /* the figures kept are the first sample after the change */
        double stats_period_s;         /* the guest samples its stats this often; 0 = never */
        double stats_phase_s;          /* first sample this long after the guest starts */
        double disk_read_mib_s;        /* a cache step without SECS reads this fast */
        double kernel_drift_mib;       /* kernel use creeping up while the workload holds ... */
        double kernel_drift_s;         /* ... reached after this long */
} SimModel;

typedef enum SimParamType {
        SIM_PARAM_DOUBLE,
        SIM_PARAM_BOOL,
} SimParamType;

typedef struct SimParam {
        const char *key; /* as in [Model] and [Guest ...] */
        SimParamType type;
        size_t offset; /* into SimModel */
        double lo, hi;
        const char *unit;
        const char *doc; /* what it is and where the default comes from */
} SimParam;

extern const SimModel sim_model_defaults;
extern const SimParam sim_model_params[];
extern const size_t sim_model_n_params;
const SimParam *sim_model_param(const char *key);
double sim_model_get(const SimModel *m, const SimParam *p);
void sim_model_set(SimModel *m, const SimParam *p, double v);

/* ---- schedules: tests/guest/memdemand.c's grammar plus page-cache and cyclic steps ---- */

typedef enum SimStepKind {
        SIM_STEP_IDLE,
        SIM_STEP_HOLD,
        SIM_STEP_RAMP, /* ramp and to: linear move to to_mib over secs */
        SIM_STEP_JUMP,
        SIM_STEP_FREE,
        SIM_STEP_CACHE,   /* read cache_mib of the disk into the page cache (rate_mib_s; 0 = the disk's) */
        SIM_STEP_UNCACHE, /* the page cache is dropped (the device's last close) */
} SimStepKind;

typedef struct SimStep {
        SimStepKind kind;
        double start_s; /* on the schedule's timeline */
        double secs;    /* < 0 = forever */
        double from_mib, to_mib;
        double cache_mib, rate_mib_s;
        unsigned source;       /* index of the written step it came from (cycles expand) */
        bool cyclic;           /* part of a cycle or saw */
        double cycle_period_s; /* ... of this period */
} SimStep;

typedef struct SimSchedule {
        SimStep *steps;
        size_t n_steps;
        double end_s; /* when the last step with an end ends; INFINITY if one lasts forever */
} SimSchedule;

/* Parses a schedule; on error *why says what and which step (g_free it). */
int sim_schedule_parse(const char *text, SimSchedule *ret, char **why);
void sim_schedule_clear(SimSchedule *s);
/* The workload's anonymous memory the schedule asks for at t (seconds on its timeline). */
double sim_schedule_anon_mib(const SimSchedule *s, double t);
/* The step running at t, or NULL before the first and after the end. */
const SimStep *sim_schedule_step_at(const SimSchedule *s, double t);

/* ---- the scenario file ---- */

typedef enum SimFaultKind {
        SIM_FAULT_FAIL,  /* calls of one kind fail with an errno */
        SIM_FAULT_LOSE,  /* the connection is lost (at a time or on the Nth set_target) */
        SIM_FAULT_BUSY,  /* a job holds a guest: reported busy, set_target fails with EBUSY */
        SIM_FAULT_STALE, /* a guest's stats stop (its stamp stands still) */
        SIM_FAULT_STUCK, /* a guest's balloon does not move */
        SIM_FAULT_SLOW,  /* calls of one kind take delay_ms of real time */
} SimFaultKind;

typedef enum SimCall {
        SIM_CALL_CONNECT,
        SIM_CALL_COLLECT,
        SIM_CALL_HOST_MEMORY,
        SIM_CALL_SET_TARGET,
        SIM_CALL_ANY,
        _SIM_CALL_MAX,
} SimCall;

typedef struct SimFault {
        char *name;
        SimFaultKind kind;
        SimCall call;
        char *guest; /* NULL = every guest */
        double from_s, until_s;
        unsigned on_call; /* LOSE: the Nth set_target call (1-based); 0 = by time */
        double down_s;    /* LOSE: connect fails this long after the loss */
        int error;        /* FAIL: the errno */
        unsigned delay_ms;
        unsigned line;
} SimFault;

typedef struct SimGuestSpec {
        char *name;
        char uuid[SIM_UUID_STRLEN];
        double current_mib, max_mib;
        bool balloon, autodeflate;
        double start_s, stop_s; /* stop_s < 0 = never */
        double ready_s;         /* the schedule's t = 0, after start */
        char *schedule_text;
        SimSchedule schedule;
        SimModel model; /* [Model] with this guest's overrides */
        unsigned line;
} SimGuestSpec;

typedef struct SimScenario {
        char *origin;
        char *text; /* the file as read */
        char *description;
        double host_total_mib, host_other_mib, guest_overhead_mib;
        SimSchedule host_other; /* other use over time (HostOther=, a schedule); empty = flat */
        double duration_s;      /* 0 = until the last schedule ends, plus 10 s */
        double step_s;
        double daemon_start_s; /* the batch tool's first tick */
        int64_t epoch_s;       /* realtime of the world's t = 0 (batch); the daemon uses now */
        SimModel model;
        GPtrArray *guests; /* SimGuestSpec* */
        GPtrArray *faults; /* SimFault* */
} SimScenario;

/* Errors name the origin and the line: "FILE:LINE: ...". */
SimScenario *sim_scenario_load_data(const char *data, const char *origin, GError **error);
SimScenario *sim_scenario_load_file(const char *path, GError **error);
void sim_scenario_free(SimScenario *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SimScenario, sim_scenario_free)

/*
 * The file's [Settings] and [Domain NAME] sections as memcoord.conf text, [Settings] renamed
 * [Coordinator] and every other line blanked, so that the config parser's "FILE:LINE"
 * errors point at the scenario file's own lines.
 */
char *sim_scenario_config_text(const SimScenario *s);
/* The time the batch tool runs by default: the longest schedule (or stop) plus 10 s. */
double sim_scenario_default_duration(const SimScenario *s);

/* ---- the world ---- */

typedef struct SimSample {
        bool valid;
        uint64_t at_usec; /* virtual time of the sample */
        double unused_mib, usable_mib, caches_mib, available_mib;
} SimSample;

typedef struct SimGuest {
        const SimGuestSpec *spec;
        bool running;
        bool ever_started;
        uint64_t started_usec;

        /* The truth. */
        double actual_mib, target_mib;
        double held_mib;   /* the workload's anonymous memory */
        double cache_mib;  /* page cache */
        double kernel_mib; /* the kernel's own */
        double holding_s;  /* how long the workload has held memory */
        double free_mib;   /* MemFree */
        bool dead;         /* its workload was OOM-killed (the schedule no longer drives it) */
        size_t next_step;  /* the next schedule step to start */
        double read_left_mib, read_rate_mib_s; /* a cache read in progress */
        unsigned oom_kills;
        bool stalled;          /* the balloon could not take what it was asked */
        bool stuck;            /* a STUCK fault holds the balloon */
        bool autodeflated;     /* the guest deflated its own balloon in the last step */
        double stats_period_s; /* 0 = stats off */

        /* What the guest and libvirt report. */
        SimSample sample;   /* the last one taken */
        SimSample snapshot; /* what a frozen guest keeps reporting */
        uint64_t frozen_until_usec;
        bool fresh_since_freeze; /* a sample moved since the last freeze: another may start */
        bool freeze_armed;       /* the next sample is the one a freeze keeps */
        uint64_t next_sample_usec;
        double reported_actual_mib; /* libvirt's balloon.current */
        uint64_t last_event_usec;   /* QEMU's last BALLOON_CHANGE */
        bool event_pending;         /* the balloon moved since */

        /* Extremes since the guest started, at every sub-step. */
        double lowest_free_mib, lowest_usable_mib, peak_actual_mib;

        /* Counters for the checks. */
        unsigned set_calls;
        unsigned set_while_stale, set_while_busy, set_without_balloon;
        uint64_t last_set_usec;
        double last_set_mib;
} SimGuest;

typedef enum SimEvent {
        SIM_EVENT_STARTED,
        SIM_EVENT_STOPPED,
        SIM_EVENT_OOM_KILL,
        SIM_EVENT_AUTODEFLATE,
        SIM_EVENT_CONNECTION_LOST,
} SimEvent;

typedef void (*SimEventFn)(void *userdata, SimEvent ev, SimGuest *g);

typedef struct SimWorld SimWorld;

/* The world keeps a pointer to sc: it must outlive the world. */
SimWorld *sim_world_new(const SimScenario *sc);
void sim_world_free(SimWorld *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SimWorld, sim_world_free)

void sim_world_set_event_fn(SimWorld *w, SimEventFn fn, void *userdata);
const SimScenario *sim_world_scenario(const SimWorld *w);
uint64_t sim_world_now(const SimWorld *w);
uint64_t sim_world_step_usec(const SimWorld *w);
/* Runs sub-steps until the clock reaches usec (rounded down to a sub-step). */
void sim_world_advance_to(SimWorld *w, uint64_t usec);

size_t sim_world_n_guests(const SimWorld *w);
SimGuest *sim_world_guest(SimWorld *w, size_t i);
SimGuest *sim_world_find(SimWorld *w, const char *uuid_or_name);

/* The host, now. free = total - sum of running guests' actual - other - overhead. */
double sim_world_host_total_mib(const SimWorld *w);
double sim_world_host_free_mib(const SimWorld *w);
double sim_world_guests_actual_mib(const SimWorld *w);

/* libvirt's balloon.current for g now (throttled QEMU events). */
double sim_guest_reported_actual_mib(const SimGuest *g);
/* The age of g's last sample, in seconds (INFINITY when there is none). */
double sim_guest_sample_age_s(const SimGuest *g, uint64_t now_usec);
bool sim_guest_busy(const SimWorld *w, const SimGuest *g);
bool sim_guest_stale(const SimWorld *w, const SimGuest *g);

/*
 * Sets g's balloon target (MiB). Returns 0, -ENOENT (not running), -EBUSY (a job holds
 * it), -EOPNOTSUPP (no balloon driver).
 */
int sim_world_set_target(SimWorld *w, SimGuest *g, double mib);

/*
 * Faults on calls. sim_world_call() is called once per hypervisor call of that kind: it
 * counts, applies SLOW delays and returns 0, the errno of a FAIL fault (negative), or
 * -ENOTCONN when the connection is (or has just been) lost: *lost_now says it went down in
 * this call.
 */
int sim_world_call(SimWorld *w, SimCall call, bool *lost_now);
/* Whether connect may succeed now (a lost connection stays down for down_s). */
bool sim_world_can_connect(const SimWorld *w);
unsigned sim_world_calls(const SimWorld *w, SimCall call);

const char *sim_call_to_string(SimCall c);
