//! Scenario tests, each named like the spec rule or broker promise it checks, driven through
//! the byte-level harness.
//!
//! This module owns scripted scenarios only; it must never test internals directly.

use std::time::Duration;

use bytes::Bytes;

use super::harness::*;
use crate::broker::{BrokerConfig, BrokerEvent, DropReason, QueueFullPolicy};
use crate::mqtt::{
    Disconnect, Packet, Properties, ProtocolVersion, PubReply, Publish, QoS, ReasonCode, RetainHandling,
    SubscriptionOptions, Unsubscribe,
};

use ProtocolVersion::{V5, V311};

fn harness() -> Harness {
    Harness::new(BrokerConfig::default())
}

fn retained_publish(topic: &str, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: topic.to_string(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    })
}

fn payloads(packets: &[Packet]) -> Vec<Vec<u8>> {
    publishes(packets).iter().map(|publish| publish.payload.to_vec()).collect()
}

fn disconnect(h: &mut Harness, connection: crate::broker::ConnectionId) {
    h.send(connection, &Packet::Disconnect(Disconnect::normal()));
    assert!(h.is_closed(connection));
}

#[test]
fn qos1_round_trip_acknowledges_the_publisher_and_delivers_once() {
    let mut h = harness();
    for version in [V311, V5] {
        let subscriber = h.connect("sub", version, true);
        h.send(subscriber, &subscribe(1, "a/+", QoS::AtLeastOnce));
        let suback = h.take(subscriber);
        assert!(
            matches!(&suback[..], [Packet::SubAck(ack)] if ack.reason_codes == vec![ReasonCode::GRANTED_QOS_1])
        );
        let publisher = h.connect("pub", version, true);
        h.send(publisher, &publish("a/b", QoS::AtLeastOnce, Some(7), b"hello"));
        assert_eq!(h.take(publisher), vec![puback(pid(7))]);
        let delivered = h.take(subscriber);
        let publish = publishes(&delivered)[0].clone();
        assert_eq!(
            (publish.qos, &publish.topic[..], &publish.payload[..]),
            (QoS::AtLeastOnce, "a/b", &b"hello"[..])
        );
        assert!(!publish.dup && !publish.retain);
        h.send(subscriber, &puback(publish.packet_id.unwrap()));
        assert_eq!(h.broker.session_backlog("sub"), Some((0, 0)));
        disconnect(&mut h, subscriber);
        disconnect(&mut h, publisher);
    }
    assert_eq!(h.broker.stats().messages_acknowledged, 2);
    assert_eq!(h.broker.session_count(), 0, "clean sessions end with their connection");
}

#[test]
fn puback_says_no_matching_subscribers_in_v5_only() {
    let mut h = harness();
    let v5 = h.connect("p5", V5, true);
    h.send(v5, &publish("nobody/home", QoS::AtLeastOnce, Some(1), b"x"));
    let reply = h.take(v5);
    assert!(
        matches!(&reply[..], [Packet::PubAck(ack)] if ack.reason_code == ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );
    let v3 = h.connect("p3", V311, true);
    h.send(v3, &publish("nobody/home", QoS::AtLeastOnce, Some(1), b"x"));
    assert_eq!(h.take(v3), vec![puback(pid(1))]);
}

#[test]
fn qos2_exactly_once_survives_a_retransmitted_publish_with_dup() {
    let mut h = harness();
    let subscriber = h.connect("sub", V5, true);
    h.send(subscriber, &subscribe(1, "q2", QoS::ExactlyOnce));
    h.take(subscriber);
    let publisher = h.connect("pub", V5, true);
    h.send(publisher, &publish("q2", QoS::ExactlyOnce, Some(5), b"once"));
    assert!(matches!(&h.take(publisher)[..], [Packet::PubRec(rec)] if rec.packet_id == pid(5)));
    // The publisher did not see PUBREC and resends with DUP: acknowledged again, not re-routed.
    let Packet::Publish(mut again) = publish("q2", QoS::ExactlyOnce, Some(5), b"once") else {
        unreachable!()
    };
    again.dup = true;
    h.send(publisher, &Packet::Publish(again));
    assert!(matches!(&h.take(publisher)[..], [Packet::PubRec(rec)] if rec.packet_id == pid(5)));
    h.send(publisher, &Packet::PubRel(PubReply::success(pid(5))));
    assert!(
        matches!(&h.take(publisher)[..], [Packet::PubComp(comp)] if comp.reason_code == ReasonCode::SUCCESS)
    );
    // After PUBCOMP the id is free: the same id is a new message.
    h.send(publisher, &publish("q2", QoS::ExactlyOnce, Some(5), b"twice"));
    h.take(publisher);

    let delivered = h.take(subscriber);
    assert_eq!(payloads(&delivered), vec![b"once".to_vec(), b"twice".to_vec()]);
    assert_eq!(h.broker.stats().publishes_duplicate_qos2, 1);
    // Outbound QoS 2: PUBREC -> PUBREL -> PUBCOMP frees the window.
    let first = publishes(&delivered)[0].packet_id.unwrap();
    h.send(subscriber, &Packet::PubRec(PubReply::success(first)));
    assert!(matches!(&h.take(subscriber)[..], [Packet::PubRel(rel)] if rel.packet_id == first));
    h.send(subscriber, &Packet::PubComp(PubReply::success(first)));
    assert_eq!(h.broker.session_backlog("sub"), Some((1, 0)));
    // PUBREL for an unknown id gets PUBCOMP 0x92 in v5.
    h.send(publisher, &Packet::PubRel(PubReply::success(pid(77))));
    assert!(
        matches!(&h.take(publisher)[..], [Packet::PubComp(comp)] if comp.reason_code == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
}

#[test]
fn persistent_session_resumes_and_receives_messages_queued_while_offline() {
    for version in [V311, V5] {
        let mut h = harness();
        let subscriber = h.connect("dev", version, false);
        h.send(subscriber, &subscribe(1, "cmd/#", QoS::AtLeastOnce));
        h.take(subscriber);
        h.lose(subscriber);
        let publisher = h.connect("ops", V5, true);
        for (index, payload) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
            let payload: &'static [u8] = Box::leak(payload.to_vec().into_boxed_slice());
            h.send(publisher, &publish("cmd/x", QoS::AtLeastOnce, Some(index as u16 + 1), payload));
        }
        h.send(publisher, &publish("cmd/x", QoS::AtMostOnce, None, b"qos0-lost"));
        assert_eq!(h.broker.session_backlog("dev"), Some((0, 3)));
        assert_eq!(h.broker.stats().dropped(DropReason::Qos0Offline), 1);

        let (again, connack) = h.connect_with(connect_packet("dev", version, false));
        assert!(connack.session_present, "{version:?}");
        let delivered = h.take(again);
        assert_eq!(payloads(&delivered), vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        h.ack_all(again, &delivered);
        assert_eq!(h.broker.session_backlog("dev"), Some((0, 0)));
    }
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_on_resume_and_pubrel_too() {
    let mut h = harness();
    let subscriber = h.connect("dev", V5, false);
    h.send(subscriber, &subscribe(1, "t/+", QoS::ExactlyOnce));
    h.take(subscriber);
    let publisher = h.connect("ops", V5, true);
    h.send(publisher, &publish("t/1", QoS::AtLeastOnce, Some(1), b"q1"));
    h.send(publisher, &publish("t/2", QoS::ExactlyOnce, Some(2), b"q2"));
    let first = h.take(subscriber);
    let ids: Vec<_> = publishes(&first).iter().map(|publish| publish.packet_id.unwrap()).collect();
    h.send(subscriber, &Packet::PubRec(PubReply::success(ids[1])));
    assert!(matches!(&h.take(subscriber)[..], [Packet::PubRel(_)]));
    h.lose(subscriber);

    let again = h.connect("dev", V5, false);
    let resent = h.take(again);
    assert_eq!(resent.len(), 2, "{resent:?}");
    let Packet::Publish(dup) = &resent[0] else { panic!("PUBLISH first: {resent:?}") };
    assert!(dup.dup && dup.packet_id == Some(ids[0]));
    assert!(matches!(&resent[1], Packet::PubRel(rel) if rel.packet_id == ids[1]));
    assert_eq!(h.broker.stats().messages_retransmitted, 2);
    h.send(again, &puback(ids[0]));
    h.send(again, &Packet::PubComp(PubReply::success(ids[1])));
    assert_eq!(h.broker.session_backlog("dev"), Some((0, 0)));
}

#[test]
fn clean_start_discards_the_previous_session() {
    let mut h = harness();
    let subscriber = h.connect("dev", V5, false);
    h.send(subscriber, &subscribe(1, "x", QoS::AtLeastOnce));
    h.lose(subscriber);
    let publisher = h.connect("ops", V5, true);
    h.send(publisher, &publish("x", QoS::AtLeastOnce, Some(1), b"old"));
    let (fresh, connack) = h.connect_with(connect_packet("dev", V5, true));
    assert!(!connack.session_present);
    assert!(h.take(fresh).is_empty(), "queued messages went with the old session");
    assert_eq!(h.broker.stats().dropped(DropReason::SessionEnded), 1);
    assert!(h.events.iter().any(|event| matches!(event,
        BrokerEvent::MessageDropped { reason: DropReason::SessionEnded, payload, .. } if &payload[..] == b"old")));
    h.send(publisher, &publish("x", QoS::AtLeastOnce, Some(2), b"new"));
    assert!(h.take(fresh).is_empty(), "subscriptions went with the old session");
    assert_eq!(h.broker.stats().sessions_discarded, 1);
}

fn queue_bound(policy: QueueFullPolicy) -> (Vec<Vec<u8>>, Harness) {
    let mut h = Harness::new(BrokerConfig {
        subscriber_queue_messages_limit: 2,
        subscriber_queue_policy: policy,
        ..BrokerConfig::default()
    });
    let subscriber = h.connect("dev", V5, false);
    h.send(subscriber, &subscribe(1, "q", QoS::AtLeastOnce));
    h.lose(subscriber);
    let publisher = h.connect("ops", V5, true);
    for (index, payload) in [&b"m1"[..], b"m2", b"m3", b"m4"].into_iter().enumerate() {
        let payload: &'static [u8] = Box::leak(payload.to_vec().into_boxed_slice());
        h.send(publisher, &publish("q", QoS::AtLeastOnce, Some(index as u16 + 1), payload));
    }
    assert_eq!(h.broker.session_backlog("dev"), Some((0, 2)));
    let again = h.connect("dev", V5, false);
    (payloads(&h.take(again)), h)
}

#[test]
fn queue_bound_drop_oldest_keeps_the_newest_and_counts() {
    let (delivered, h) = queue_bound(QueueFullPolicy::DropOldest);
    assert_eq!(delivered, vec![b"m3".to_vec(), b"m4".to_vec()]);
    assert_eq!(h.broker.stats().dropped(DropReason::QueueFullDropOldest), 2);
    let dropped: Vec<&[u8]> = h
        .events
        .iter()
        .filter_map(|event| match event {
            BrokerEvent::MessageDropped {
                reason: DropReason::QueueFullDropOldest,
                payload,
                topic,
                client_id,
            } => {
                assert_eq!((&**topic, &**client_id), ("q", "dev"));
                Some(&payload[..])
            }
            _ => None,
        })
        .collect();
    assert_eq!(dropped, vec![&b"m1"[..], b"m2"], "each drop names its message");
}

#[test]
fn queue_bound_reject_new_keeps_the_oldest_and_counts() {
    let (delivered, h) = queue_bound(QueueFullPolicy::RejectNew);
    assert_eq!(delivered, vec![b"m1".to_vec(), b"m2".to_vec()]);
    assert_eq!(h.broker.stats().dropped(DropReason::QueueFullRejectNew), 2);
}

#[test]
fn keep_alive_timeout_closes_with_0x8d_and_publishes_the_will() {
    let mut h = harness();
    let watcher = h.connect("watcher", V311, true);
    h.send(watcher, &subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.take(watcher);
    let mut connect = connect_packet("dev", V5, true);
    connect.keep_alive_secs = 10;
    connect.will = Some(will("wills/dev", b"gone", None));
    let (dev, _) = h.connect_with(connect);
    h.advance(Duration::from_secs(14));
    h.send(dev, &Packet::PingReq);
    assert_eq!(h.take(dev), vec![Packet::PingResp]);
    h.advance(Duration::from_secs(14));
    assert!(!h.is_closed(dev), "14 s after the PINGREQ is within 1.5 x 10 s");
    h.advance(Duration::from_secs(2));
    assert!(h.is_closed(dev));
    assert!(
        matches!(&h.take(dev)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert_eq!(payloads(&h.take(watcher)), vec![b"gone".to_vec()]);
    assert_eq!(h.broker.stats().keep_alive_timeouts, 1);
    assert_eq!(h.broker.stats().wills_published, 1);
}

#[test]
fn normal_disconnect_publishes_no_will_and_0x04_does() {
    let mut h = harness();
    let watcher = h.connect_idle("watcher");
    h.send(watcher, &subscribe(1, "wills/#", QoS::AtMostOnce));
    h.take(watcher);
    for (reason, expect_will) in
        [(ReasonCode::NORMAL_DISCONNECTION, false), (ReasonCode::DISCONNECT_WITH_WILL_MESSAGE, true)]
    {
        let mut connect = connect_packet("dev", V5, true);
        connect.will = Some(will("wills/dev", b"bye", None));
        let (dev, _) = h.connect_with(connect);
        h.send(dev, &Packet::Disconnect(Disconnect::with_reason(reason)));
        assert!(h.is_closed(dev));
        assert_eq!(payloads(&h.take(watcher)).len(), usize::from(expect_will), "{reason:?}");
    }
    // v3.1.1: a lost transport publishes the will, a DISCONNECT does not.
    let mut connect = connect_packet("old", V311, true);
    connect.will = Some(will("wills/old", b"lost", None));
    let (old, _) = h.connect_with(connect);
    h.lose(old);
    assert_eq!(payloads(&h.take(watcher)), vec![b"lost".to_vec()]);
}

#[test]
fn will_delay_is_cancelled_by_a_reconnect_and_fires_otherwise() {
    let mut h = harness();
    let watcher = h.connect_idle("watcher");
    h.send(watcher, &subscribe(1, "wills/#", QoS::AtMostOnce));
    h.take(watcher);
    let with_delayed_will = |delay: u32| {
        let mut connect = connect_packet("dev", V5, false);
        connect.properties.session_expiry_interval_secs = Some(600);
        connect.will = Some(will("wills/dev", b"late", Some(delay)));
        connect
    };
    let (dev, _) = h.connect_with(with_delayed_will(30));
    h.lose(dev);
    h.advance(Duration::from_secs(20));
    let (dev, connack) = h.connect_with(with_delayed_will(30));
    assert!(connack.session_present);
    h.advance(Duration::from_secs(60));
    let seen = h.take(watcher);
    assert!(seen.is_empty(), "reconnect within the delay cancels the will: {seen:?}");
    assert_eq!(h.broker.stats().wills_discarded, 1);
    h.lose(dev);
    h.advance(Duration::from_secs(29));
    assert!(h.take(watcher).is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(payloads(&h.take(watcher)), vec![b"late".to_vec()]);
    assert!(h.events.iter().any(|event| matches!(event, BrokerEvent::WillPublished { .. })));
}

#[test]
fn will_delay_longer_than_session_expiry_fires_when_the_session_ends() {
    let mut h = harness();
    let watcher = h.connect_idle("watcher");
    h.send(watcher, &subscribe(1, "wills/#", QoS::AtMostOnce));
    h.take(watcher);
    let mut connect = connect_packet("dev", V5, false);
    connect.properties.session_expiry_interval_secs = Some(10);
    connect.will = Some(will("wills/dev", b"expired", Some(300)));
    let (dev, _) = h.connect_with(connect);
    h.lose(dev);
    h.advance(Duration::from_secs(9));
    assert!(h.take(watcher).is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(payloads(&h.take(watcher)), vec![b"expired".to_vec()]);
    assert_eq!(h.broker.session_count(), 1, "only the watcher's session is left");
    assert_eq!(h.broker.stats().sessions_expired, 1);
    assert!(
        h.events
            .iter()
            .any(|event| matches!(event, BrokerEvent::SessionExpired { client_id } if &**client_id == "dev"))
    );
}

#[test]
fn takeover_closes_the_old_connection_with_0x8e_and_keeps_the_session() {
    let mut h = harness();
    let old = h.connect("dev", V5, false);
    h.send(old, &subscribe(1, "t", QoS::AtLeastOnce));
    h.take(old);
    let (new, connack) = h.connect_with(connect_packet("dev", V5, false));
    assert!(connack.session_present);
    assert!(h.is_closed(old));
    assert!(
        matches!(&h.take(old)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SESSION_TAKEN_OVER)
    );
    let publisher = h.connect("ops", V311, true);
    h.send(publisher, &publish("t", QoS::AtLeastOnce, Some(1), b"to-new"));
    assert_eq!(payloads(&h.take(new)), vec![b"to-new".to_vec()]);
    assert_eq!(h.broker.stats().sessions_taken_over, 1);
    // A v3.1.1 takeover just closes the old connection.
    let old311 = h.connect("dev311", V311, true);
    let _new311 = h.connect("dev311", V311, true);
    assert!(h.is_closed(old311));
    assert!(h.take(old311).is_empty());
}

#[test]
fn retained_messages_are_set_replaced_cleared_and_follow_retain_handling() {
    let mut h = harness();
    let publisher = h.connect("pub", V5, true);
    h.send(publisher, &retained_publish("state/a", b"a1"));
    h.send(publisher, &retained_publish("state/a", b"a2"));
    h.send(publisher, &retained_publish("state/b", b"b1"));
    assert_eq!(h.broker.stats().retained_messages_current, 2);

    let subscriber = h.connect("sub", V5, true);
    h.send(subscriber, &subscribe(1, "state/+", QoS::AtLeastOnce));
    let got = h.take(subscriber);
    let retained = publishes(&got);
    assert_eq!(payloads(&got), vec![b"a2".to_vec(), b"b1".to_vec()]);
    assert!(retained.iter().all(|publish| publish.retain && publish.qos == QoS::AtMostOnce));
    h.ack_all(subscriber, &got);

    let options = |retain_handling| SubscriptionOptions {
        retain_handling,
        ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
    };
    h.send(subscriber, &subscribe_with(2, "state/+", options(RetainHandling::SendAtSubscribeIfNew), None));
    assert_eq!(payloads(&h.take(subscriber)).len(), 0, "existing subscription: nothing with handling 1");
    h.send(subscriber, &subscribe_with(3, "state/a", options(RetainHandling::SendAtSubscribeIfNew), None));
    assert_eq!(payloads(&h.take(subscriber)), vec![b"a2".to_vec()]);
    h.send(subscriber, &subscribe_with(4, "state/#", options(RetainHandling::DoNotSend), None));
    assert_eq!(payloads(&h.take(subscriber)).len(), 0, "handling 2 sends nothing");

    // A live retained publish reaches subscribers with RETAIN=0 unless Retain As Published.
    h.send(publisher, &retained_publish("state/b", b"b2"));
    let live = h.take(subscriber);
    assert!(publishes(&live).iter().all(|publish| !publish.retain));
    // An empty retained payload clears the topic.
    h.send(publisher, &retained_publish("state/a", b""));
    h.take(subscriber);
    assert_eq!(h.broker.stats().retained_messages_current, 1);
    let late = h.connect("late", V311, true);
    h.send(late, &subscribe(1, "state/#", QoS::AtMostOnce));
    assert_eq!(payloads(&h.take(late)), vec![b"b2".to_vec()]);
}

#[test]
fn retain_as_published_keeps_the_flag_on_live_messages() {
    let mut h = harness();
    let subscriber = h.connect("sub", V5, true);
    let options =
        SubscriptionOptions { retain_as_published: true, ..SubscriptionOptions::with_qos(QoS::AtMostOnce) };
    h.send(subscriber, &subscribe_with(1, "r", options, None));
    h.take(subscriber);
    let publisher = h.connect("pub", V5, true);
    h.send(publisher, &retained_publish("r", b"x"));
    assert!(publishes(&h.take(subscriber))[0].retain);
}

#[test]
fn retained_store_bound_rejects_new_topics_with_0x97_for_qos1_v5() {
    let mut h = Harness::new(BrokerConfig { retained_messages_limit: 1, ..BrokerConfig::default() });
    let publisher = h.connect("pub", V5, true);
    h.send(publisher, &retained_publish("r/1", b"kept"));
    let mut second = retained_publish("r/2", b"refused");
    if let Packet::Publish(publish) = &mut second {
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = Some(pid(3));
    }
    h.send(publisher, &second);
    assert!(
        matches!(&h.take(publisher)[..], [Packet::PubAck(ack)] if ack.reason_code == ReasonCode::QUOTA_EXCEEDED)
    );
    h.send(publisher, &retained_publish("r/1", b"replaced"));
    assert_eq!(h.broker.stats().dropped(DropReason::RetainedStoreFull), 1);
    assert_eq!(h.broker.stats().retained_messages_current, 1);
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let mut h = harness();
    let all = h.connect("all", V5, true);
    h.send(all, &subscribe(1, "#", QoS::AtMostOnce));
    h.send(all, &subscribe(2, "+/info", QoS::AtMostOnce));
    let sys = h.connect("sys", V5, true);
    h.send(sys, &subscribe(1, "$SYS/#", QoS::AtMostOnce));
    h.take(all);
    h.take(sys);
    let publisher = h.connect("pub", V5, true);
    h.send(publisher, &publish("$SYS/info", QoS::AtMostOnce, None, b"sys"));
    h.send(publisher, &publish("plain/info", QoS::AtMostOnce, None, b"plain"));
    assert_eq!(payloads(&h.take(all)), vec![b"plain".to_vec()]);
    assert_eq!(payloads(&h.take(sys)), vec![b"sys".to_vec()]);
}

#[test]
fn shared_subscription_delivers_each_message_to_one_member_round_robin() {
    let mut h = harness();
    let members: Vec<_> = (0..3)
        .map(|index| {
            let member = h.connect(&format!("worker{index}"), V5, true);
            h.send(member, &subscribe(1, "$share/g/jobs/+", QoS::AtLeastOnce));
            h.take(member);
            member
        })
        .collect();
    let plain = h.connect("plain", V5, true);
    h.send(plain, &subscribe(1, "jobs/#", QoS::AtMostOnce));
    h.take(plain);
    let publisher = h.connect("pub", V5, true);
    for index in 0..6u16 {
        h.send(publisher, &publish("jobs/x", QoS::AtLeastOnce, Some(index + 1), b"job"));
    }
    let counts: Vec<usize> = members
        .iter()
        .map(|&member| {
            let got = h.take(member);
            h.ack_all(member, &got);
            publishes(&got).len()
        })
        .collect();
    assert_eq!(counts, vec![2, 2, 2]);
    assert_eq!(payloads(&h.take(plain)).len(), 6, "non-shared subscribers get every message");
    // Unsubscribing from a shared filter works by the full filter.
    let unsubscribe = Unsubscribe {
        packet_id: pid(9),
        topic_filters: vec!["$share/g/jobs/+".into()],
        properties: Properties::default(),
    };
    h.send(members[0], &Packet::Unsubscribe(unsubscribe));
    assert!(
        matches!(&h.take(members[0])[..], [Packet::UnsubAck(ack)] if ack.reason_codes == vec![ReasonCode::SUCCESS])
    );
}

#[test]
fn subscription_identifiers_and_overlaps_give_one_delivery_with_max_qos_and_all_ids() {
    let mut h = harness();
    let subscriber = h.connect("sub", V5, true);
    h.send(subscriber, &subscribe_with(1, "s/+", SubscriptionOptions::with_qos(QoS::AtMostOnce), Some(11)));
    h.send(subscriber, &subscribe_with(2, "s/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce), Some(22)));
    h.send(subscriber, &subscribe(3, "s/x", QoS::ExactlyOnce));
    h.take(subscriber);
    let publisher = h.connect("pub", V5, true);
    h.send(publisher, &publish("s/x", QoS::AtLeastOnce, Some(1), b"one"));
    let got = h.take(subscriber);
    let delivered = publishes(&got);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].qos, QoS::AtLeastOnce, "min(published 1, max granted 2)");
    let mut ids = delivered[0].properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![11, 22]);
}

#[test]
fn no_local_keeps_a_clients_own_messages_from_it() {
    let mut h = harness();
    let client = h.connect("echo", V5, true);
    let options = SubscriptionOptions { no_local: true, ..SubscriptionOptions::with_qos(QoS::AtMostOnce) };
    h.send(client, &subscribe_with(1, "chat", options, None));
    h.take(client);
    let other = h.connect("other", V5, true);
    h.send(other, &subscribe(1, "chat", QoS::AtMostOnce));
    h.take(other);
    h.send(client, &publish("chat", QoS::AtMostOnce, None, b"mine"));
    assert!(h.take(client).is_empty());
    assert_eq!(payloads(&h.take(other)), vec![b"mine".to_vec()]);
}

#[test]
fn message_expiry_drops_stale_queued_messages_and_reduces_the_interval() {
    let mut h = harness();
    let subscriber = h.connect("dev", V5, false);
    h.send(subscriber, &subscribe(1, "e", QoS::AtLeastOnce));
    h.lose(subscriber);
    let publisher = h.connect("pub", V5, true);
    for (index, expiry) in [(1u16, 5u32), (2, 60)] {
        let Packet::Publish(mut packet) = publish("e", QoS::AtLeastOnce, Some(index), b"m") else {
            unreachable!()
        };
        packet.properties.message_expiry_interval_secs = Some(expiry);
        h.send(publisher, &Packet::Publish(packet));
    }
    h.advance(Duration::from_secs(10));
    let again = h.connect("dev", V5, false);
    let got = h.take(again);
    let delivered = publishes(&got);
    assert_eq!(delivered.len(), 1, "the 5 s message expired in the queue");
    assert_eq!(delivered[0].properties.message_expiry_interval_secs, Some(50));
    assert_eq!(h.broker.stats().dropped(DropReason::Expired), 1);
}

#[test]
fn outbound_inflight_never_exceeds_the_clients_receive_maximum() {
    let mut h = harness();
    let mut connect = connect_packet("slow", V5, true);
    connect.properties.receive_maximum = Some(2);
    let (slow, _) = h.connect_with(connect);
    h.send(slow, &subscribe(1, "w", QoS::AtLeastOnce));
    h.take(slow);
    let publisher = h.connect("pub", V5, true);
    for index in 1..=5u16 {
        h.send(publisher, &publish("w", QoS::AtLeastOnce, Some(index), b"m"));
    }
    let mut received = 0;
    loop {
        let got = h.take(slow);
        let batch = publishes(&got).len();
        assert!(batch <= 2);
        let (inflight, _) = h.broker.session_backlog("slow").unwrap();
        assert!(inflight <= 2, "inflight {inflight}");
        if batch == 0 {
            break;
        }
        received += batch;
        h.ack_all(slow, &got);
    }
    assert_eq!(received, 5);
}

#[test]
fn inbound_topic_alias_maps_and_resolves() {
    let mut h = harness();
    let subscriber = h.connect("sub", V311, true);
    h.send(subscriber, &subscribe(1, "long/topic/name", QoS::AtMostOnce));
    h.take(subscriber);
    let publisher = h.connect("pub", V5, true);
    let Packet::Publish(mut first) = publish("long/topic/name", QoS::AtMostOnce, None, b"set") else {
        unreachable!()
    };
    first.properties.topic_alias = Some(3);
    h.send(publisher, &Packet::Publish(first.clone()));
    first.topic.clear();
    first.payload = Bytes::from_static(b"use");
    h.send(publisher, &Packet::Publish(first));
    let got = h.take(subscriber);
    assert_eq!(payloads(&got), vec![b"set".to_vec(), b"use".to_vec()]);
    assert!(publishes(&got).iter().all(|publish| publish.topic == "long/topic/name"));
}

#[test]
fn max_packet_size_is_enforced_inbound_and_outbound() {
    let mut h = Harness::new(BrokerConfig { max_packet_size_bytes: 128, ..BrokerConfig::default() });
    // Outbound: the client announced 40 bytes; a bigger message is dropped for it and counted.
    let mut connect = connect_packet("small", V5, true);
    connect.properties.maximum_packet_size = Some(40);
    let (small, _) = h.connect_with(connect);
    h.send(small, &subscribe(1, "m", QoS::AtLeastOnce));
    h.take(small);
    let publisher = h.connect("pub", V5, true);
    h.send(publisher, &publish("m", QoS::AtLeastOnce, Some(1), &[b'x'; 60]));
    h.send(publisher, &publish("m", QoS::AtLeastOnce, Some(2), b"fits"));
    assert_eq!(payloads(&h.take(small)), vec![b"fits".to_vec()]);
    assert_eq!(h.broker.stats().dropped(DropReason::TooLargeForClient), 1);
    // Inbound: beyond the broker's 128 bytes -> DISCONNECT 0x95.
    h.send(publisher, &publish("m", QoS::AtMostOnce, None, &[b'y'; 200]));
    assert!(h.is_closed(publisher));
    let tail = h.take(publisher);
    assert!(
        matches!(tail.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::PACKET_TOO_LARGE),
        "{tail:?}"
    );
}

#[test]
fn unsubscribe_reports_per_filter_codes() {
    let mut h = harness();
    let client = h.connect("c", V5, true);
    h.send(client, &subscribe(1, "a", QoS::AtMostOnce));
    h.take(client);
    let unsubscribe = Unsubscribe {
        packet_id: pid(2),
        topic_filters: vec!["a".into(), "b".into()],
        properties: Properties::default(),
    };
    h.send(client, &Packet::Unsubscribe(unsubscribe));
    let got = h.take(client);
    assert!(
        matches!(&got[..], [Packet::UnsubAck(ack)] if ack.reason_codes == vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]),
        "{got:?}"
    );
    assert_eq!(h.broker.subscription_count(), 0);
}

#[test]
fn client_identifiers_are_assigned_in_v5_and_rejected_in_v311_without_clean_session() {
    let mut h = harness();
    let (_, connack) = h.connect_with(connect_packet("", V5, true));
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert!(connack.properties.assigned_client_identifier.as_deref().is_some_and(|id| !id.is_empty()));
    let (rejected, connack) = h.connect_with(connect_packet("", V311, false));
    assert_eq!(connack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(h.is_closed(rejected));
    let (_, connack) = h.connect_with(connect_packet("", V311, true));
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
}

#[test]
fn connack_advertises_limits_and_caps_keep_alive_and_session_expiry() {
    let mut h = Harness::new(BrokerConfig {
        keep_alive_max_secs: 30,
        session_expiry_max_secs: 100,
        ..BrokerConfig::default()
    });
    let mut connect = connect_packet("c", V5, false);
    connect.keep_alive_secs = 300;
    connect.properties.session_expiry_interval_secs = Some(u32::MAX);
    let (_, connack) = h.connect_with(connect);
    let properties = &connack.properties;
    assert_eq!(properties.receive_maximum, Some(100));
    assert_eq!(properties.server_keep_alive_secs, Some(30));
    assert_eq!(properties.session_expiry_interval_secs, Some(100));
    assert_eq!(properties.maximum_qos, None, "absent means QoS 2");
    assert_eq!(properties.retain_available, Some(true));
    assert_eq!(properties.shared_subscription_available, Some(true));
    assert_eq!(properties.maximum_packet_size, Some(BrokerConfig::default().max_packet_size_bytes));
}

#[test]
fn session_expiry_removes_a_disconnected_session_after_its_interval() {
    let mut h = harness();
    let mut connect = connect_packet("dev", V5, false);
    connect.properties.session_expiry_interval_secs = Some(30);
    let (dev, _) = h.connect_with(connect);
    h.send(dev, &subscribe(1, "x", QoS::AtLeastOnce));
    disconnect(&mut h, dev);
    h.advance(Duration::from_secs(29));
    assert_eq!(h.broker.session_count(), 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.broker.session_count(), 0);
    assert_eq!(h.broker.subscription_count(), 0);
    // DISCONNECT may shorten the expiry to zero.
    let mut connect = connect_packet("dev2", V5, false);
    connect.properties.session_expiry_interval_secs = Some(30);
    let (dev2, _) = h.connect_with(connect);
    let mut bye = Disconnect::normal();
    bye.properties.session_expiry_interval_secs = Some(0);
    h.send(dev2, &Packet::Disconnect(bye));
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn queued_bytes_quota_rejects_qos1_with_0x97_in_v5_and_closes_v311() {
    let mut h = Harness::new(BrokerConfig { queued_bytes_limit: 10, ..BrokerConfig::default() });
    let subscriber = h.connect("dev", V5, false);
    h.send(subscriber, &subscribe(1, "q", QoS::AtLeastOnce));
    h.lose(subscriber);
    let publisher = h.connect("pub", V5, true);
    h.send(publisher, &publish("q", QoS::AtLeastOnce, Some(1), b"0123456789"));
    assert_eq!(h.take(publisher), vec![puback(pid(1))]);
    h.send(publisher, &publish("q", QoS::AtLeastOnce, Some(2), b"over"));
    assert!(
        matches!(&h.take(publisher)[..], [Packet::PubAck(ack)] if ack.reason_code == ReasonCode::QUOTA_EXCEEDED)
    );
    let old = h.connect("old", V311, true);
    h.send(old, &publish("q", QoS::AtLeastOnce, Some(1), b"over"));
    assert!(h.is_closed(old));
    assert!(h.take(old).is_empty(), "no PUBACK: the v3.1.1 client keeps its message");
    assert_eq!(h.broker.stats().publishes_rejected_quota, 2);
}

#[test]
fn connections_without_connect_are_closed_after_the_connect_timeout() {
    let mut h = harness();
    let idle = h.open();
    h.advance(Duration::from_secs(9));
    assert!(!h.is_closed(idle));
    h.advance(Duration::from_secs(1));
    assert!(h.is_closed(idle));
    assert_eq!(h.broker.stats().connect_timeouts, 1);
}

#[test]
fn connections_limit_answers_connack_quota_exceeded() {
    let mut h = Harness::new(BrokerConfig { connections_limit: 1, ..BrokerConfig::default() });
    let _first = h.connect("one", V5, true);
    let (second, connack) = h.connect_with(connect_packet("two", V5, true));
    assert_eq!(connack.reason_code, ReasonCode::QUOTA_EXCEEDED);
    assert!(h.is_closed(second));
    let (third, connack) = h.connect_with(connect_packet("three", V311, true));
    assert_eq!(connack.reason_code, ReasonCode::SERVER_UNAVAILABLE, "v3.1.1 return code 3");
    assert!(h.is_closed(third));
}

#[test]
fn same_inputs_give_the_same_outputs() {
    fn run() -> (Vec<Vec<Packet>>, crate::broker::BrokerStats) {
        let mut h = harness();
        let members: Vec<_> = (0..4)
            .map(|index| {
                let member = h.connect(&format!("m{index}"), V5, index % 2 == 0);
                h.send(member, &subscribe(1, "$share/g/d/#", QoS::AtLeastOnce));
                h.send(member, &subscribe(2, &format!("d/{index}/+"), QoS::ExactlyOnce));
                member
            })
            .collect();
        let publisher = h.connect("p", V311, true);
        for index in 0..20u16 {
            let topic: &'static str = Box::leak(format!("d/{}/t", index % 4).into_boxed_str());
            h.send(publisher, &publish(topic, QoS::AtLeastOnce, Some(index + 1), b"x"));
        }
        h.lose(members[1]);
        h.advance(Duration::from_secs(5));
        let outputs = members.iter().map(|&member| h.take(member)).collect();
        (outputs, h.broker.stats().clone())
    }
    assert_eq!(run(), run());
}

#[test]
fn subscriptions_per_session_limit_refuses_extra_filters_with_0x97() {
    let mut h = Harness::new(BrokerConfig { subscriptions_per_session_limit: 2, ..BrokerConfig::default() });
    for (version, refused) in [(V5, ReasonCode::QUOTA_EXCEEDED), (V311, ReasonCode::UNSPECIFIED_ERROR)] {
        let client = h.connect("many", version, true);
        let codes: Vec<ReasonCode> = ["a", "b", "a", "c"]
            .into_iter()
            .enumerate()
            .map(|(index, filter)| {
                h.send(client, &subscribe(index as u16 + 1, filter, QoS::AtMostOnce));
                match &h.take(client)[..] {
                    [Packet::SubAck(ack)] => ack.reason_codes[0],
                    other => panic!("expected SUBACK, got {other:?}"),
                }
            })
            .collect();
        let granted = ReasonCode::GRANTED_QOS_0;
        assert_eq!(
            codes,
            vec![granted, granted, granted, refused],
            "{version:?}: re-subscribing is not a new filter"
        );
        disconnect(&mut h, client);
    }
    assert_eq!(h.broker.subscription_count(), 0);
}

#[test]
fn retained_will_is_stored_for_later_subscribers() {
    let mut h = harness();
    let mut connect = connect_packet("dev", V5, true);
    let mut last_will = will("status/dev", b"offline", None);
    last_will.retain = true;
    connect.will = Some(last_will);
    let (dev, _) = h.connect_with(connect);
    h.lose(dev);
    let late = h.connect("late", V5, true);
    h.send(late, &subscribe(1, "status/+", QoS::AtLeastOnce));
    let got = h.take(late);
    assert_eq!(payloads(&got), vec![b"offline".to_vec()]);
    assert!(publishes(&got)[0].retain);
}

#[test]
fn a_protocol_error_publishes_the_will_and_a_takeover_follows_spec_3_1_4() {
    let mut h = harness();
    let watcher = h.connect_idle("watcher");
    h.send(watcher, &subscribe(1, "wills/#", QoS::AtMostOnce));
    h.take(watcher);
    // Protocol error (a second CONNECT): DISCONNECT 0x82 and the will.
    let mut connect = connect_packet("dev", V5, true);
    connect.will = Some(will("wills/dev", b"error", None));
    let (dev, _) = h.connect_with(connect.clone());
    h.send(dev, &Packet::Connect(Box::new(connect.clone())));
    assert!(
        matches!(&h.take(dev)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR)
    );
    assert_eq!(payloads(&h.take(watcher)), vec![b"error".to_vec()]);
    // Takeover with Clean Start 1: the old will is sent (its session ends).
    let (old, _) = h.connect_with(connect.clone());
    let (_new, _) = h.connect_with(connect);
    assert!(h.is_closed(old));
    assert_eq!(payloads(&h.take(watcher)), vec![b"error".to_vec()]);
    // Takeover with Clean Start 0 and a will delay: the session continues, the will is not sent.
    let mut delayed = connect_packet("dev2", V5, false);
    delayed.properties.session_expiry_interval_secs = Some(60);
    delayed.will = Some(will("wills/dev2", b"delayed", Some(10)));
    let (old, _) = h.connect_with(delayed.clone());
    let (_new, connack) = h.connect_with(delayed);
    assert!(connack.session_present && h.is_closed(old));
    h.advance(Duration::from_secs(30));
    assert!(h.take(watcher).is_empty());
}

#[test]
fn events_report_connects_takeovers_and_closes() {
    let mut h = harness();
    let first = h.connect("dev", V5, false);
    let second = h.connect("dev", V5, false);
    h.lose(second);
    let connected: Vec<bool> = h
        .events
        .iter()
        .filter_map(|event| match event {
            BrokerEvent::Connected { session_present, .. } => Some(*session_present),
            _ => None,
        })
        .collect();
    assert_eq!(connected, vec![false, true]);
    assert!(h.events.contains(&BrokerEvent::ConnectionClosed {
        connection: first,
        reason: ReasonCode::SESSION_TAKEN_OVER
    }));
    assert!(h.events.contains(&BrokerEvent::ConnectionLost { connection: second }));
    assert!(h.events.iter().any(|event| matches!(event, BrokerEvent::SessionTakenOver { old_connection, new_connection, .. } if *old_connection == first && *new_connection == second)));
}

#[test]
fn expired_retained_messages_are_not_delivered() {
    let mut h = harness();
    let publisher = h.connect("pub", V5, true);
    let Packet::Publish(mut packet) = retained_publish("r/e", b"short") else { unreachable!() };
    packet.properties.message_expiry_interval_secs = Some(5);
    h.send(publisher, &Packet::Publish(packet));
    h.advance(Duration::from_secs(2));
    let early = h.connect_idle("early");
    h.send(early, &subscribe(1, "r/#", QoS::AtMostOnce));
    let got = h.take(early);
    assert_eq!(publishes(&got)[0].properties.message_expiry_interval_secs, Some(3));
    h.advance(Duration::from_secs(3));
    let late = h.connect_idle("late");
    h.send(late, &subscribe(1, "r/#", QoS::AtMostOnce));
    assert!(payloads(&h.take(late)).is_empty());
    assert_eq!(h.broker.stats().retained_messages_current, 0, "expired retained messages are removed");
}

#[test]
fn client_identifier_length_and_charset_follow_the_config() {
    let mut h = Harness::new(BrokerConfig {
        client_id_length_limit: 23,
        client_id_strict_charset: true,
        ..BrokerConfig::default()
    });
    for (client_id, accepted) in [
        ("abcdefghijklmnopqrstuvw", true),
        ("abcdefghijklmnopqrstuvwx", false),
        ("plant-7_line-3", true),
        ("plant/7", false),
        ("caf\u{e9}", false),
    ] {
        for version in [V311, V5] {
            let (connection, connack) = h.connect_with(connect_packet(client_id, version, true));
            let expected =
                if accepted { ReasonCode::SUCCESS } else { ReasonCode::CLIENT_IDENTIFIER_NOT_VALID };
            assert_eq!(connack.reason_code, expected, "{client_id:?} over {version:?}");
            assert_eq!(h.is_closed(connection), !accepted);
            if accepted {
                disconnect(&mut h, connection);
            }
        }
    }
}

#[test]
fn outbound_topic_aliases_shorten_repeated_topics_up_to_the_clients_maximum() {
    let mut h = harness();
    let mut connect = connect_packet("aliased", V5, true);
    connect.properties.topic_alias_maximum = Some(2);
    let (client, _) = h.connect_with(connect);
    h.send(client, &subscribe(1, "plant/#", QoS::AtMostOnce));
    h.take(client);
    let publisher = h.connect("pub", V5, true);
    for topic in ["plant/a", "plant/a", "plant/b", "plant/c", "plant/b", "plant/c"] {
        h.send(publisher, &publish(topic, QoS::AtMostOnce, None, b"v"));
    }
    let got = h.take(client);
    let seen: Vec<(String, Option<u16>)> = publishes(&got)
        .iter()
        .map(|publish| (publish.topic.clone(), publish.properties.topic_alias))
        .collect();
    let expected = [
        ("plant/a", Some(1)),
        ("", Some(1)),
        ("plant/b", Some(2)),
        ("plant/c", None),
        ("", Some(2)),
        ("plant/c", None),
    ];
    let expected: Vec<(String, Option<u16>)> =
        expected.iter().map(|(topic, alias)| (topic.to_string(), *alias)).collect();
    assert_eq!(seen, expected);
    // A client without a Topic Alias Maximum never gets aliases.
    let plain = h.connect("plain", V5, true);
    h.send(plain, &subscribe(1, "plant/#", QoS::AtMostOnce));
    h.take(plain);
    h.send(publisher, &publish("plant/a", QoS::AtMostOnce, None, b"v"));
    assert!(publishes(&h.take(plain)).iter().all(|publish| publish.properties.topic_alias.is_none()));
}

#[test]
fn bytes_split_anywhere_give_the_same_output() {
    use crate::broker::{Broker, ConnectionId, Transmit};
    use crate::mqtt::codec::encode;
    use crate::time::Time;

    let mut stream = bytes::BytesMut::new();
    let mut connect = connect_packet("split", V5, true);
    connect.will = Some(will("wills/split", b"w", None));
    let packets = [
        Packet::Connect(Box::new(connect)),
        subscribe(1, "s/#", QoS::ExactlyOnce),
        publish("s/1", QoS::AtLeastOnce, Some(2), b"one"),
        publish("s/2", QoS::ExactlyOnce, Some(3), b"two"),
        Packet::PubRel(PubReply::success(pid(3))),
        Packet::PingReq,
        Packet::Disconnect(Disconnect::normal()),
    ];
    for packet in &packets {
        encode(packet, V5, &mut stream).expect("encodes");
    }
    let run = |chunk_len: usize| {
        let mut broker = Broker::new(BrokerConfig::default());
        let now = Time::from_secs(1);
        broker.handle_connection_opened(now, ConnectionId(1));
        let mut output = Vec::new();
        let mut closed = false;
        for chunk in stream.chunks(chunk_len) {
            broker.handle_bytes(now, ConnectionId(1), chunk);
            while let Some(transmit) = broker.poll_transmit() {
                match transmit {
                    Transmit::Send { bytes, .. } => output.extend_from_slice(&bytes),
                    Transmit::Close { .. } => closed = true,
                }
            }
        }
        (output, closed, broker.stats().packets_received)
    };
    let whole = run(stream.len());
    assert!(whole.1, "DISCONNECT closes");
    assert_eq!(whole.2, packets.len() as u64);
    for chunk_len in 1..=9 {
        assert_eq!(run(chunk_len), whole, "chunks of {chunk_len} bytes");
    }
}

#[test]
fn shutdown_sends_v5_disconnect_0x8b_and_closes_v311_and_pre_connect_connections() {
    let mut h = harness();
    let modern = h.connect("modern", V5, true);
    let classic = h.connect("classic", V311, true);
    let silent = h.open();
    h.broker.shutdown(h.now);
    h.flush();
    assert!(
        matches!(&h.take(modern)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SERVER_SHUTTING_DOWN),
        "a v5 client is told why before the close"
    );
    assert!(h.take(classic).is_empty(), "v3.1.1 has no server DISCONNECT");
    assert!(h.take(silent).is_empty(), "no DISCONNECT before CONNACK (spec 4.13.2)");
    assert!(h.is_closed(modern) && h.is_closed(classic) && h.is_closed(silent));
    assert!(h.broker.is_shut_down());
    let stats = h.broker.stats();
    assert_eq!(stats.shutdown_closes, 3);
    assert_eq!(stats.connections_current, 0);
    assert_eq!((h.broker.connection_count(), h.broker.connected_count()), (0, 0));
    let shutdown_closes = h
        .events
        .iter()
        .filter(|event| {
            matches!(event, BrokerEvent::ConnectionClosed { reason, .. }
                if *reason == ReasonCode::SERVER_SHUTTING_DOWN)
        })
        .count();
    assert_eq!(shutdown_closes, 3);
    assert_eq!(h.events.last(), Some(&BrokerEvent::ShutDown { connections_closed: 3, wills_published: 0 }));
}

#[test]
fn shutdown_publishes_every_will_first_so_connected_subscribers_receive_them() {
    let mut h = harness();
    let watcher = h.connect_idle("watcher");
    h.send(watcher, &subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.take(watcher);
    let mut connect = connect_packet("dev", V5, true);
    connect.will = Some(will("wills/dev", b"now", None));
    let (dev, _) = h.connect_with(connect);
    // A will waiting for its delay is published too: the session ends with the broker.
    let mut connect = connect_packet("sleepy", V5, false);
    connect.properties.session_expiry_interval_secs = Some(3_600);
    connect.will = Some(will("wills/sleepy", b"delayed", Some(600)));
    let (sleepy, _) = h.connect_with(connect);
    h.lose(sleepy);
    assert!(h.take(watcher).is_empty(), "the delay has not passed");
    h.broker.shutdown(h.now);
    h.flush();
    let received = h.take(watcher);
    assert_eq!(payloads(&received).len(), 2, "both wills: {received:?}");
    assert!(
        matches!(received.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::SERVER_SHUTTING_DOWN),
        "the wills come before the watcher's own DISCONNECT"
    );
    assert!(h.is_closed(dev) && h.is_closed(watcher));
    assert_eq!(h.broker.stats().wills_published, 2);
    assert_eq!(h.broker.stats().wills_discarded, 0);
    assert_eq!(h.broker.stats().shutdown_closes, 2);
    assert_eq!(h.events.last(), Some(&BrokerEvent::ShutDown { connections_closed: 2, wills_published: 2 }));
}

#[test]
fn after_shutdown_connections_are_refused_and_inputs_only_counted() {
    let mut h = harness();
    let mut connect = connect_packet("keeper", V5, false);
    connect.properties.session_expiry_interval_secs = Some(3_600);
    let (keeper, _) = h.connect_with(connect);
    h.broker.shutdown(h.now);
    h.flush();
    assert!(h.is_closed(keeper));
    assert_eq!(h.broker.poll_timeout(), None, "no timer is left to fire");
    let stats_after_shutdown = h.broker.stats().clone();
    let sessions_after_shutdown = h.broker.session_count();

    let late = h.open();
    h.flush();
    assert!(h.is_closed(late), "a connection after shutdown is closed at once");
    assert_eq!(h.broker.connection_count(), 0);
    h.send_raw(late, &[0x10, 0x00]);
    h.lose(keeper);
    h.advance(Duration::from_secs(7_200));
    h.broker.shutdown(h.now);
    h.flush();

    assert!(h.take(late).is_empty());
    let stats = h.broker.stats();
    assert_eq!(stats.connections_refused_after_shutdown, 1);
    assert_eq!(stats.inputs_ignored_after_shutdown, 2);
    assert_eq!(stats.shutdown_closes, 1, "a second shutdown does nothing");
    assert_eq!(stats.connections_opened, stats_after_shutdown.connections_opened);
    assert_eq!(stats.sessions_expired, 0, "session expiry does not fire after shutdown");
    assert_eq!(h.broker.session_count(), sessions_after_shutdown, "the session stays until the broker goes");
    assert_eq!(h.events.iter().filter(|event| matches!(event, BrokerEvent::ShutDown { .. })).count(), 1);
}
