/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Journal MESSAGE_IDs of everything memcoordd logs. They are stable: admins filter on them
 * (journalctl MESSAGE_ID=...) and the message catalog (daemon/memcoord.catalog, installed in
 * /usr/lib/systemd/catalog/) explains each one under `journalctl -x`. Never reuse or change an
 * ID; a message whose meaning changes gets a new one. The catalog has one entry per ID here,
 * which the unit suite checks.
 *
 * Fields that go with them (journal field names):
 *   MEMCOORD_DOMAIN, MEMCOORD_UUID   the guest, for every guest message
 *   MEMCOORD_FROM_KIB, MEMCOORD_TO_KIB, MEMCOORD_REASON, MEMCOORD_DRY_RUN   balloon changes
 *   MEMCOORD_REASON                  also the cause of a skip (no-balloon, stale, excluded, busy,
 *                                    stuck)
 *   MEMCOORD_SHORT_KIB               how much a guest's need is not covered
 *   MEMCOORD_URI                     the libvirt connection
 *   MEMCOORD_ERROR                   what failed, as libvirt or the system said it
 *   MEMCOORD_METHOD, MEMCOORD_UID    a bus call being authorized, and its caller
 */

/* Life of the daemon */
#define MC_MESSAGE_STARTED "68de17ba5e894fdf8d29d7889b0f19f7"
#define MC_MESSAGE_STOPPING "c767dd28117140fbb0185e0cf1fd8b15"
#define MC_MESSAGE_STARTUP_FAILED "5a9b67c80d3c45aa90eb8af7a8a735b5"
#define MC_MESSAGE_INTERNAL_ERROR "ba80cbebd4884eb4b087c020e649e5be"
#define MC_MESSAGE_RELOADED "946834c13239495a8c7814e6d636c525"
#define MC_MESSAGE_RELOAD_FAILED "b889c1dfe4f9435d95bb587802c6d2cc"
#define MC_MESSAGE_URI_CHANGE_IGNORED "484664aee5764e4b9d84a0bf83f9c6bd"
#define MC_MESSAGE_PAUSED "78500c2ee3404f53a2accd34b507b6a3"
#define MC_MESSAGE_RESUMED "7bdbfff7c76f4cc08038f64df946b2e9"
#define MC_MESSAGE_STATE_DIR_FAILED "311f6703e5df48978050f209d9114c78"
#define MC_MESSAGE_STATE_SAVE_FAILED "06f835e564284ff994604778429729eb"
#define MC_MESSAGE_POLKIT_FAILED "ea903e7f507b4618b54d835486b3de57"
#define MC_MESSAGE_POLKIT_TIMEOUT "95c29ee977014d67952837d7a25f4f5b"
#define MC_MESSAGE_AUTH_ALLOWED "b90869bfa6a74140a57438a66856283e"
#define MC_MESSAGE_AUTH_DENIED "a543f67fb86a4b498032c842d2b24700"
#define MC_MESSAGE_AUTH_OVERLOAD "508fcc25444c45989aa64f10e2cddd33"

/* The libvirt connection */
#define MC_MESSAGE_CONNECTED "442c053e22b34391a99563a3c160b1e9"
#define MC_MESSAGE_CONNECT_FAILED "f9a0a2bcfb35465da86cb7788954c45b"
#define MC_MESSAGE_CONNECTION_LOST "8bd0b70e8c18459183633782f32e1135"
#define MC_MESSAGE_COLLECT_FAILED "3653228ab99c41349275c05514a29b3b"
#define MC_MESSAGE_HOST_MEMORY_FAILED "5a5ff1267abe4c71aca6c48f05aebe24"
#define MC_MESSAGE_STATS_PERIOD_FAILED "d51e381b06f1447c895dd30f3193bda8"

/* Guests */
#define MC_MESSAGE_GUEST_APPEARED "3a9541174d0743e78f9b6d01475a14ad"
#define MC_MESSAGE_GUEST_GONE "7010f0abbc36498889db9697b3855b82"
#define MC_MESSAGE_GUEST_SHORT "e9332a2a46d6465e94c7fdf6f8f8ea96"

/* Balloon changes */
#define MC_MESSAGE_BALLOON_CHANGED "5b0b7e3f2a8c4d3e9a1f6c2d4e8b7a10"
#define MC_MESSAGE_BALLOON_DRY_RUN "5780513db8424509aba98e0c7a77df55"
#define MC_MESSAGE_BALLOON_FAILED "6a463209c5d24d6eb87b424d484b462e"
#define MC_MESSAGE_BALLOON_MOVED_BY_GUEST "dc56dca978db41d280ea64e06e1bef3b"

/* A guest left alone, by cause */
#define MC_MESSAGE_SKIP_NO_BALLOON "6cecaa50bc3b48bfbd00e3eca438ad73"
#define MC_MESSAGE_SKIP_STALE "1196b70b1e2d4a6f89d309eb9e276bcf"
#define MC_MESSAGE_SKIP_EXCLUDED "98b6156a46c2409c896c87b7ab41b99b"
#define MC_MESSAGE_SKIP_BUSY "a0fa8c94d11f498f8f80dfc7fc9a57b9"
#define MC_MESSAGE_BALLOON_STUCK "52cab417a5964103afa7c49e4ee24580"

/* State, metrics, settings in the domain XML */
#define MC_MESSAGE_STATE_SET_ASIDE "47b9a25adc2e411b8550cf58f210dace"
#define MC_MESSAGE_METRICS_SERVING "bed9c02b3b4343d3afedc06303b61a6c"
#define MC_MESSAGE_METRICS_FAILED "32fde295caa34cf5bc9a62a904207064"
#define MC_MESSAGE_METADATA_IGNORED "ad7524c9ccb1411da4ce71f107bf2ad7"
#define MC_MESSAGE_METADATA_EVENTS_UNSUPPORTED "d17c3478b1564061a552dc6bc1127710"
#define MC_MESSAGE_METADATA_WRITTEN "9da52055a0f84e15bafa66b83e3aa79d"
#define MC_MESSAGE_METADATA_WRITE_FAILED "e78128ecaeb943c89e3c608f4b4ea9db"
