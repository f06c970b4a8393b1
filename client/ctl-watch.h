/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The watcher: one connection to memcoordd (here or over ssh) and what it knows of the daemon's
 * state. It reads the state once (the manager's properties, the guests' objects through the
 * ObjectManager, their figures through ListDomains) and, when told to follow, keeps it current
 * from the signals: PropertiesChanged, InterfacesAdded/Removed, BalloonChanged, TickCompleted,
 * and the owner of org.memcoord coming and going (the state is read again when the daemon comes
 * back). The verbs see the state and get one callback per change; they only print.
 */

#include <systemd/sd-event.h>

#include "ctl.h"

typedef struct CtlWatch CtlWatch;

typedef enum CtlWatchFlags {
        CTL_WATCH_FOLLOW = 1 << 0,  /* follow the changes; without it, one snapshot */
        CTL_WATCH_FIGURES = 1 << 1, /* re-read the guests' figures after every tick */
} CtlWatchFlags;

typedef struct CtlTick {
        uint64_t tick;
        uint64_t host_free;
        uint32_t managed;
        uint32_t changed;
} CtlTick;

typedef struct CtlBalloon {
        const char *object;
        const char *name;
        uint64_t from;
        uint64_t to;
        const char *reason;
} CtlBalloon;

/* Every callback may be NULL. The change callbacks come only once the state is ready; tick and
 * balloon, events rather than state, from the start. */
typedef struct CtlWatchCallbacks {
        /* The state is read: at the start, and again each time memcoordd came back. */
        void (*ready)(CtlWatch *w, void *userdata);
        /* What failed ("connect to the system bus", "read memcoordd's state") and why. */
        void (*failed)(CtlWatch *w, const char *what, const char *reason, void *userdata);
        void (*daemon_stopped)(CtlWatch *w, void *userdata);
        void (*daemon_started)(CtlWatch *w, void *userdata);
        void (*domain_added)(CtlWatch *w, const DomainInfo *d, void *userdata);
        /* Before the guest's record goes. */
        void (*domain_removed)(CtlWatch *w, const DomainInfo *d, void *userdata);
        /* A property that is announced (not a figure) took a new value; d is NULL for the
         * manager. The record already holds the new value. */
        void (*property_changed)(CtlWatch *w, const DomainInfo *d, const CtlField *f, void *userdata);
        void (*tick)(CtlWatch *w, const CtlTick *t, void *userdata);
        /* CTL_WATCH_FIGURES: the figures of the tick were read. */
        void (*refreshed)(CtlWatch *w, void *userdata);
        void (*balloon)(CtlWatch *w, const CtlBalloon *b, void *userdata);
        void (*disconnected)(CtlWatch *w, const char *reason, void *userdata);
} CtlWatchCallbacks;

/* Starts watching host (NULL or CTL_LOCAL_HOST: this machine) on event. Fails only for lack of
 * memory; a connection that fails is reported through failed, from the loop. */
int ctl_watch_new(sd_event *event, const char *host, CtlWatchFlags flags, const CtlWatchCallbacks *cb,
                  void *userdata, CtlWatch **ret);
CtlWatch *ctl_watch_free(CtlWatch *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CtlWatch, ctl_watch_free)

const ManagerInfo *ctl_watch_manager(const CtlWatch *w);
/* The guests, sorted by name; free the array (not the guests) with g_free(). */
const DomainInfo **ctl_watch_domains(const CtlWatch *w, size_t *ret_n);

/* The verbs' loop: sd-event, ended by SIGINT, SIGTERM and SIGHUP with success. */
int ctl_event_new(sd_event **ret);
/* Runs it: 0 when it ended well, a negative errno when not (the reason was logged). */
int ctl_event_run(sd_event *event);
