use super::MeetingAction as A;
use super::MeetingEvent as E;
use super::*;
use crate::domain::testing::{chair, house, system, Given};
use crate::domain::ClusterStatus;

fn scheduled() -> E {
    E::MeetingScheduled {
        room: "demo".into(),
        title: "Họp dân".into(),
        starts_at: time::macros::datetime!(2026-11-21 08:00 +07),
        agenda: vec!["Giao thông".into(), "Thủy lợi".into()],
    }
}

fn open() -> Vec<E> {
    vec![scheduled(), E::MeetingOpened]
}

fn connected(h: &str, c: &str) -> E {
    E::HouseConnected {
        house: h.into(),
        connection: c.into(),
    }
}

/// Open; house-1 and house-2 connected; house-1 holds the floor, house-2's hand is up.
fn one_speaks_another_waits() -> Vec<E> {
    [
        open(),
        vec![
            connected("house-1", "c1"),
            connected("house-2", "c2"),
            E::FloorGranted {
                house: "house-1".into(),
            },
            E::HandRaised {
                house: "house-2".into(),
            },
        ],
    ]
    .concat()
}

fn connect(h: &str, c: &str) -> A {
    A::ConnectHouse {
        house: h.into(),
        connection: c.into(),
    }
}

fn disconnect(h: &str, c: &str) -> A {
    A::DisconnectHouse {
        house: h.into(),
        connection: c.into(),
    }
}

fn given(events: Vec<E>) -> Given<Meeting> {
    Given::<Meeting>::events(events)
}

#[test]
fn schedule_then_open() {
    given(vec![])
        .when(
            chair(),
            A::Schedule {
                room: "demo".into(),
                title: " Họp dân ".into(),
                starts_at: time::macros::datetime!(2026-11-21 08:00 +07),
                agenda: vec!["Giao thông".into(), "Thủy lợi".into()],
            },
        )
        .then(vec![scheduled()]);
    given(vec![scheduled()])
        .when(chair(), A::Open)
        .then(vec![E::MeetingOpened]);
}

#[test]
fn schedule_refuses_empty_title_and_twice() {
    given(vec![])
        .when(
            chair(),
            A::Schedule {
                room: "demo".into(),
                title: "  ".into(),
                starts_at: time::macros::datetime!(2026-11-21 08:00 +07),
                agenda: vec![],
            },
        )
        .then_error("invalid title: must not be empty");
    given(vec![scheduled()])
        .when(
            chair(),
            A::Schedule {
                room: "demo".into(),
                title: "x".into(),
                starts_at: time::macros::datetime!(2026-11-21 08:00 +07),
                agenda: vec![],
            },
        )
        .then_error("the meeting is already scheduled");
}

#[test]
fn only_the_chair_opens_and_closes() {
    given(vec![scheduled()])
        .when(house("house-1"), A::Open)
        .then_error("a house may not open a meeting");
    given(open())
        .when(house("house-1"), A::Close)
        .then_error("a house may not close a meeting");
}

#[test]
fn open_needs_schedule_and_happens_once() {
    given(vec![])
        .when(chair(), A::Open)
        .then_error("the meeting has not been scheduled");
    given(open())
        .when(chair(), A::Open)
        .then_error("the meeting is already open");
}

#[test]
fn a_closed_meeting_refuses_everything() {
    let closed = [open(), vec![E::MeetingClosed]].concat();
    for action in [
        A::Open,
        A::Close,
        A::StartAgendaItem { index: 0 },
        A::ReportHeadcount {
            house: "house-1".into(),
            count: 3,
        },
        A::GrantFloor {
            house: "house-1".into(),
        },
    ] {
        given(closed.clone())
            .when(chair(), action)
            .then_error("the meeting is closed");
    }
    given(closed)
        .when(system(), connect("house-1", "c1"))
        .then_error("the meeting is closed");
}

#[test]
fn attendance_before_opening_is_refused() {
    given(vec![scheduled()])
        .when(system(), connect("house-1", "c1"))
        .then_error("the meeting is not open");
}

#[test]
fn agenda_items_start_end_and_switch() {
    given(open())
        .when(chair(), A::StartAgendaItem { index: 0 })
        .then(vec![E::AgendaItemStarted { index: 0 }]);
    given([open(), vec![E::AgendaItemStarted { index: 0 }]].concat())
        .when(chair(), A::StartAgendaItem { index: 1 })
        .then(vec![
            E::AgendaItemEnded { index: 0 },
            E::AgendaItemStarted { index: 1 },
        ]);
    given(open())
        .when(chair(), A::StartAgendaItem { index: 2 })
        .then_error("there is no agenda item 2");
    given(open())
        .when(chair(), A::EndAgendaItem)
        .then_error("no agenda item is in progress");
}

#[test]
fn a_house_is_connected_once_until_its_connection_ends() {
    // A second connect while connected (the SFU replaced the session): still one presence.
    for connection in ["c1", "c2"] {
        given([open(), vec![connected("house-1", "c1")]].concat())
            .when(system(), connect("house-1", connection))
            .then(vec![]);
    }
    // A connection the meeting never recorded ending changes nothing.
    given([open(), vec![connected("house-1", "c1")]].concat())
        .when(system(), disconnect("house-1", "c2"))
        .then(vec![]);
    // Connections are the SFU's facts: a chair's token may not record them.
    given(open())
        .when(chair(), connect("house-1", "c1"))
        .then_error("a chair may not record a connection");
    given([open(), vec![connected("house-1", "c1")]].concat())
        .when(chair(), disconnect("house-1", "c1"))
        .then_error("a chair may not record a disconnection");
}

#[test]
fn an_old_log_with_a_second_screen_still_disconnects_the_house() {
    // ScreenChanged is no longer produced; replayed from an old log, either screen ending
    // ends the house's presence.
    given(
        [
            open(),
            vec![
                connected("house-1", "c1"),
                E::ScreenChanged {
                    house: "house-1".into(),
                    connection: "c2".into(),
                    connected: true,
                },
            ],
        ]
        .concat(),
    )
    .when(system(), disconnect("house-1", "c1"))
    .then(vec![E::HouseDisconnected {
        house: "house-1".into(),
        connection: "c1".into(),
    }]);
}

#[test]
fn a_house_that_leaves_loses_floor_and_hand() {
    given(
        [
            open(),
            vec![
                connected("house-1", "c1"),
                E::FloorGranted {
                    house: "house-1".into(),
                },
            ],
        ]
        .concat(),
    )
    .when(system(), disconnect("house-1", "c1"))
    .then(vec![
        E::FloorRevoked {
            house: "house-1".into(),
            reason: RevokeReason::Left,
        },
        E::HouseDisconnected {
            house: "house-1".into(),
            connection: "c1".into(),
        },
    ]);
    given(
        [
            open(),
            vec![
                connected("house-2", "c9"),
                E::HandRaised {
                    house: "house-2".into(),
                },
            ],
        ]
        .concat(),
    )
    .when(system(), disconnect("house-2", "c9"))
    .then(vec![
        E::HandLowered {
            house: "house-2".into(),
        },
        E::HouseDisconnected {
            house: "house-2".into(),
            connection: "c9".into(),
        },
    ]);
}

#[test]
fn floor_passes_from_one_house_to_another() {
    given(one_speaks_another_waits())
        .when(
            chair(),
            A::GrantFloor {
                house: "house-2".into(),
            },
        )
        .then(vec![
            E::FloorRevoked {
                house: "house-1".into(),
                reason: RevokeReason::GrantedToAnother,
            },
            E::HandLowered {
                house: "house-2".into(),
            },
            E::FloorGranted {
                house: "house-2".into(),
            },
        ]);
}

#[test]
fn floor_rules() {
    given(open())
        .when(
            chair(),
            A::GrantFloor {
                house: "house-1".into(),
            },
        )
        .then_error("house house-1 is not connected");
    given([open(), vec![connected("house-1", "c1")]].concat())
        .when(
            house("house-1"),
            A::GrantFloor {
                house: "house-1".into(),
            },
        )
        .then_error("a house may not grant the floor");
    given(open())
        .when(chair(), A::RevokeFloor)
        .then_error("nobody holds the floor");
    given([open(), vec![connected("house-1", "c1")]].concat())
        .when(
            house("house-2"),
            A::RaiseHand {
                house: "house-1".into(),
            },
        )
        .then_error("a house may not raise another house's hand");
    given([open(), vec![connected("house-1", "c1")]].concat())
        .when(
            house("house-1"),
            A::RaiseHand {
                house: "house-1".into(),
            },
        )
        .then(vec![E::HandRaised {
            house: "house-1".into(),
        }]);
}

#[test]
fn headcount_is_the_houses_own_and_bounded() {
    given(open())
        .when(
            house("house-1"),
            A::ReportHeadcount {
                house: "house-1".into(),
                count: 42,
            },
        )
        .then(vec![E::HeadcountReported {
            house: "house-1".into(),
            count: 42,
        }]);
    given(open())
        .when(
            house("house-2"),
            A::ReportHeadcount {
                house: "house-1".into(),
                count: 42,
            },
        )
        .then_error("a house may not report another house's headcount");
    given(open())
        .when(
            chair(),
            A::CheckIn {
                house: "house-1".into(),
                name: "".into(),
            },
        )
        .then_error("invalid name: must not be empty");
}

#[test]
fn closing_ends_everything_in_progress() {
    given(
        [
            open(),
            vec![
                E::AgendaItemStarted { index: 1 },
                connected("house-1", "c1"),
                E::FloorGranted {
                    house: "house-1".into(),
                },
                E::RelayStarted,
            ],
        ]
        .concat(),
    )
    .when(chair(), A::Close)
    .then(vec![
        E::AgendaItemEnded { index: 1 },
        E::FloorRevoked {
            house: "house-1".into(),
            reason: RevokeReason::MeetingClosed,
        },
        E::RelayStopped,
        E::HouseDisconnected {
            house: "house-1".into(),
            connection: "c1".into(),
        },
        E::MeetingClosed,
    ]);
}

#[test]
fn relay_and_cluster_status() {
    given(open())
        .when(chair(), A::StartRelay)
        .then(vec![E::RelayStarted]);
    given([open(), vec![E::RelayStarted]].concat())
        .when(chair(), A::StartRelay)
        .then_error("the relay is already running");
    given(open())
        .when(chair(), A::StopRelay)
        .then_error("the relay is already stopped");
    given(open())
        .when(
            chair(),
            A::ChangeClusterStatus {
                cluster: "xom-1".into(),
                status: ClusterStatus::Down,
            },
        )
        .then_error("a chair may not report a cluster status");
    given(open())
        .when(
            system(),
            A::ChangeClusterStatus {
                cluster: "xom-1".into(),
                status: ClusterStatus::Down,
            },
        )
        .then(vec![E::ClusterStatusChanged {
            cluster: "xom-1".into(),
            status: ClusterStatus::Down,
        }]);
}

#[test]
fn the_holder_lowering_its_hand_yields_the_floor() {
    let holding = [
        open(),
        vec![
            connected("house-1", "c1"),
            E::FloorGranted {
                house: "house-1".into(),
            },
        ],
    ]
    .concat();
    given(holding.clone())
        .when(
            house("house-1"),
            A::LowerHand {
                house: "house-1".into(),
            },
        )
        .then(vec![E::FloorRevoked {
            house: "house-1".into(),
            reason: RevokeReason::Yielded,
        }]);
    // Once yielded, nobody holds it: the chair has nothing to revoke.
    given(
        [
            holding,
            vec![E::FloorRevoked {
                house: "house-1".into(),
                reason: RevokeReason::Yielded,
            }],
        ]
        .concat(),
    )
    .when(chair(), A::RevokeFloor)
    .then_error("nobody holds the floor");
    // Another house lowering its hand leaves the floor where it is.
    given(one_speaks_another_waits())
        .when(
            house("house-2"),
            A::LowerHand {
                house: "house-2".into(),
            },
        )
        .then(vec![E::HandLowered {
            house: "house-2".into(),
        }]);
}
