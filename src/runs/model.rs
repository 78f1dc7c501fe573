//! Run rules without IO: a track checked point by point, judged for plausibility (anti-cheat),
//! measured (geodesic distance, duration) and turned into the H3 cells it passes through (not
//! across a pause or a long gap between fixes); the live payload of captured cells with its topic;
//! the wallet's arithmetic.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use geo::{Distance, Geodesic, Haversine, InterpolatePoint, Point};
use h3o::{CellIndex, LatLng, Resolution};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::{CATCH_UP_WINDOW, CLOCK_LEEWAY, Topics};

/// Cells captured at one event, as they are captured: `event:{id}:territory`.
pub const TERRITORY: Topics<CellCaptured> = Topics::stream("event", "territory");

/// The payload of [`TERRITORY`] (wire v1): a cell changed hands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellCaptured {
    /// The event.
    pub event_id: Uuid,
    /// The H3 cell.
    pub cell: u64,
    /// Its new holder.
    pub owner_id: Uuid,
    /// When.
    pub captured_at: DateTime<Utc>,
    /// The cell's version after this capture (see `territories.version`); 0 in messages of
    /// releases before it, which cannot be ordered.
    #[serde(default)]
    pub version: i64,
}

/// What one `territoryChanged` stream has shown: each cell's newest capture (its version). A
/// capture no newer than the one shown for its cell is not sent: after a catch-up showed a cell as
/// it is now, a late message of an older capture would take the map back. Versions, not capture
/// times, order them: the instances that saved two captures may disagree about the time. It holds
/// at most one entry per cell of the event.
pub struct Shown {
    /// Captures before this were made before the stream began.
    began: DateTime<Utc>,
    cells: HashMap<u64, i64>,
}

impl Shown {
    /// A stream that subscribed at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            began: now - CLOCK_LEEWAY,
            cells: HashMap::new(),
        }
    }

    /// From when a catch-up at `now` looks for captures: the last [`CATCH_UP_WINDOW`], not before
    /// the stream began.
    pub fn since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.began.max(now - CATCH_UP_WINDOW)
    }

    /// Whether `captured` is news for its cell, now recorded as shown. A capture without a version
    /// (an older release's message) is sent as it comes.
    pub fn news(&mut self, captured: &CellCaptured) -> bool {
        if captured.version == 0 {
            return true;
        }
        match self.cells.get(&captured.cell) {
            Some(&shown) if shown >= captured.version => false,
            _ => {
                self.cells.insert(captured.cell, captured.version);
                true
            }
        }
    }
}

/// Most points one track may hold (a 10-hour run at one fix a second is 36,000).
pub const MAX_TRACK_POINTS: usize = 100_000;

/// How far a single GPS fix may be off, in meters: distances within twice this carry no speed.
pub const GPS_NOISE_METERS: f64 = 25.0;

/// A sustained speed is measured over at least this much of the track's path...
pub const SUSTAINED_METERS: f64 = 200.0;

/// ...and at least this long, so a burst of bad fixes (after a tunnel, at a cold start) is averaged
/// out while a car, a bike or a jump still is not.
pub const SUSTAINED_SECONDS: i64 = 30;

/// Most consecutive wild fixes left out as a glitch; more in a row are a movement.
pub const MAX_GLITCH_POINTS: usize = 3;

/// How far a device's clock may differ from the server's before points fall outside the run.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// Longest time between two fixes across which the line joining them captures cells. Past it the
/// runner was not seen in between (the signal was lost, or the device stopped recording), so only
/// the fixes' own cells are captured; the distance still counts the straight line.
pub const MAX_GAP_SECONDS: i64 = 60;

/// One GPS fix of a track.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackPoint {
    /// Degrees, -90 to 90.
    pub latitude: f64,
    /// Degrees, -180 to 180.
    pub longitude: f64,
    /// When the fix was taken.
    pub at: DateTime<Utc>,
    /// Whether the recording resumed here after a pause (a GPX file's next segment): the fix is
    /// not joined to the one before it, so the way between them counts neither distance nor
    /// cells. Speed is still judged across it (a pause is no licence to teleport).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumes: bool,
}

impl TrackPoint {
    fn point(self) -> Point {
        Point::new(self.longitude, self.latitude)
    }

    /// Geodesic distance in meters (WGS84): what a run's distance is made of.
    pub fn distance_to(self, other: Self) -> f64 {
        Geodesic.distance(self.point(), other.point())
    }

    /// Whether the line from `self` to the next fix, `next`, captures the cells it crosses: the
    /// recording did not pause between them and they are at most [`MAX_GAP_SECONDS`] apart.
    fn drawn_to(self, next: Self) -> bool {
        !next.resumes && next.at - self.at <= Duration::seconds(MAX_GAP_SECONDS)
    }

    /// Great-circle distance in meters: the cheap one the speed checks screen with (within 0.5% of
    /// the geodesic, far inside GPS error).
    fn haversine_to(self, other: Self) -> f64 {
        Haversine.distance(self.point(), other.point())
    }
}

/// A track as given: every point's coordinates within range (BAD_USER_INPUT naming the point's
/// field otherwise), at most [`MAX_TRACK_POINTS`]. Plausibility is [`judge`]'s.
pub fn parse_track(points: Vec<TrackPoint>, field: &str) -> Result<Vec<TrackPoint>> {
    if points.len() > MAX_TRACK_POINTS {
        return Err(Error::bad_input(
            field,
            format!("a track holds at most {MAX_TRACK_POINTS} points"),
        ));
    }
    for (n, point) in points.iter().enumerate() {
        if !(point.latitude.is_finite() && (-90.0..=90.0).contains(&point.latitude)) {
            return Err(Error::bad_input(
                format!("{field}[{n}].latitude"),
                "latitude is a number from -90 to 90",
            ));
        }
        if !(point.longitude.is_finite() && (-180.0..=180.0).contains(&point.longitude)) {
            return Err(Error::bad_input(
                format!("{field}[{n}].longitude"),
                "longitude is a number from -180 to 180",
            ));
        }
        crate::model::instant(point.at, &format!("{field}[{n}].at"))?;
    }
    Ok(points)
}

/// What a run's track is judged against.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the track is being saved.
    pub saved_at: DateTime<Utc>,
    /// Sustained speed above which the track is rejected, meters per second.
    pub max_speed: f64,
    /// Cell size.
    pub resolution: Resolution,
}

impl Limits {
    /// `RALLY_RUN_MAX_SPEED_KMH` and `RALLY_H3_RESOLUTION` for a run started at `started_at`.
    pub fn new(
        started_at: DateTime<Utc>,
        saved_at: DateTime<Utc>,
        max_speed_kmh: f64,
        resolution: u8,
    ) -> Self {
        Self {
            started_at,
            saved_at,
            max_speed: max_speed_kmh / 3.6,
            resolution: Resolution::try_from(resolution).unwrap_or(Resolution::Ten),
        }
    }
}

/// A plausible track, measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Geodesic length over the points kept, meters, not across pauses.
    pub distance_meters: f64,
    /// From the first point to the last (pauses included, as a watch's elapsed time).
    pub duration_seconds: i32,
    /// Every cell the track passes through, in the order first reached, each once (see
    /// [`cells`]).
    pub cells: Vec<CellIndex>,
    /// Wild fixes left out (a few in a row that jumped away and came back).
    pub glitches: usize,
}

/// What a track amounts to.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Plausible: saved, its cells captured.
    Saved(Measured),
    /// Implausible, with a reason a person can read; captures nothing.
    Rejected(String),
}

/// Whether going from `a` to `b` needs a speed above `max_speed`, once GPS noise is allowed for (a
/// distance within twice [`GPS_NOISE_METERS`] proves no movement at all).
fn too_fast(a: TrackPoint, b: TrackPoint, max_speed: f64) -> bool {
    let meters = (a.haversine_to(b) - 2.0 * GPS_NOISE_METERS).max(0.0);
    let seconds = (b.at - a.at).num_milliseconds() as f64 / 1000.0;
    meters > 0.0 && (seconds <= 0.0 || meters / seconds > max_speed)
}

/// The indices of the points of `track` without glitches: up to [`MAX_GLITCH_POINTS`] consecutive
/// fixes too far from the last good point, followed by one that agrees with it again (fixes that
/// jumped away and came back). The first point is a glitch when it is too far from the next two,
/// which agree; the last few are when all of them are too far from the last good point. Fixes
/// that jump away and stay are kept: that is a movement, judged by [`sustained_speed`].
fn without_glitches(track: &[TrackPoint], max_speed: f64) -> Vec<usize> {
    let mut kept: Vec<usize> = Vec::with_capacity(track.len());
    let first_is_glitch = track.len() >= 3
        && too_fast(track[0], track[1], max_speed)
        && too_fast(track[0], track[2], max_speed)
        && !too_fast(track[1], track[2], max_speed);
    let mut i = usize::from(first_is_glitch);
    while i < track.len() {
        let point = track[i];
        let good = kept.last().map(|&k| track[k]);
        if let Some(good) = good
            && too_fast(good, point, max_speed)
            && let Some(back) = (i + 1..track.len().min(i + 1 + MAX_GLITCH_POINTS))
                .find(|&k| !too_fast(good, track[k], max_speed))
        {
            // Points i..back jumped away and `back` agrees with the last good point again.
            i = back;
            continue;
        }
        if let Some(good) = good
            && track.len() - i <= MAX_GLITCH_POINTS
            && track[i..]
                .iter()
                .all(|&late| too_fast(good, late, max_speed))
        {
            // The last few fixes jumped away and the track ended before any came back: a glitch
            // like the first point's (a movement that stays is longer than a glitch).
            break;
        }
        kept.push(i);
        i += 1;
    }
    kept
}

/// The points of `track` at the increasing indices `kept`, each resuming the recording when it, or
/// a point left out since the last one kept, did (a pause is not lost with a glitch).
fn kept_points(track: &[TrackPoint], kept: &[usize]) -> Vec<TrackPoint> {
    let mut next = 0;
    kept.iter()
        .map(|&k| {
            let resumes = next > 0 && track[next..=k].iter().any(|point| point.resumes);
            next = k + 1;
            TrackPoint {
                resumes,
                ..track[k]
            }
        })
        .collect()
}

/// Judges a track: fewer than 2 points, a point earlier than the one before it, a point outside the
/// run (before it started or after the save, with [`CLOCK_SKEW_SECONDS`] allowed), or a speed above
/// the limit sustained over at least [`SUSTAINED_METERS`] and [`SUSTAINED_SECONDS`] rejects it,
/// across pauses too. Glitches (a few wild fixes that come back) are left out rather than
/// rejecting a real run.
pub fn judge(track: &[TrackPoint], limits: Limits) -> Verdict {
    let [first, .., last] = track else {
        return Verdict::Rejected("a track needs at least 2 points".to_owned());
    };
    if let Some(n) = (1..track.len()).find(|&n| track[n].at < track[n - 1].at) {
        return Verdict::Rejected(format!(
            "point {} is earlier than the point before it",
            n + 1
        ));
    }
    let skew = Duration::seconds(CLOCK_SKEW_SECONDS);
    if first.at < limits.started_at - skew {
        return Verdict::Rejected(format!(
            "the track starts at {}, before the run started ({})",
            first.at.to_rfc3339(),
            limits.started_at.to_rfc3339()
        ));
    }
    if last.at > limits.saved_at + skew {
        return Verdict::Rejected(format!(
            "the track ends at {}, after it was saved ({})",
            last.at.to_rfc3339(),
            limits.saved_at.to_rfc3339()
        ));
    }
    let kept = kept_points(track, &without_glitches(track, limits.max_speed));
    if let Some(reason) = sustained_speed(&kept, limits.max_speed) {
        return Verdict::Rejected(reason);
    }
    let distance_meters = kept
        .windows(2)
        .filter(|pair| !pair[1].resumes)
        .map(|pair| pair[0].distance_to(pair[1]))
        .sum();
    let duration = (last.at - first.at).num_seconds();
    let most = most_steps(limits, duration, kept.len());
    let Some(cells) = cells(&kept, limits.resolution, most) else {
        return Verdict::Rejected(format!(
            "the track takes more than {most} steps from cell to cell, more than a run at the \
             {:.0} km/h limit could in {duration} s",
            limits.max_speed * 3.6
        ));
    };
    Verdict::Saved(Measured {
        distance_meters,
        duration_seconds: i32::try_from(duration).unwrap_or(i32::MAX),
        cells,
        glitches: track.len() - kept.len(),
    })
}

/// Most steps from cell to cell (revisits counted) a plausible track of `seconds` and `fixes`
/// points takes: twice a straight line at the speed limit (a winding route crosses more cells
/// than a straight one), at least [`SUSTAINED_SECONDS`] of it, plus a step and
/// [`GPS_NOISE_METERS`] of wandering either way at each fix (at most one a second). Drawing the
/// cells stops there: the speed rules judge a track's ends, and a track that keeps going back and
/// forth between places far apart (which no straight stretch shows) would otherwise be drawn in
/// full, each crossing hundreds of thousands of cells.
fn most_steps(limits: Limits, seconds: i64, fixes: usize) -> usize {
    let seconds = seconds.max(SUSTAINED_SECONDS) as f64;
    let edge = limits.resolution.edge_length_m();
    let moving = limits.max_speed * seconds / edge;
    let wandering = (fixes as f64).min(seconds + 1.0) * (1.0 + 2.0 * GPS_NOISE_METERS / edge);
    (2.0 * moving + wandering).ceil() as usize + 64
}

/// The first stretch of the track, from a point to the first later one at least
/// [`SUSTAINED_METERS`] along the path and [`SUSTAINED_SECONDS`] later (or to the last point, over
/// [`SUSTAINED_SECONDS`], when none is), whose straight-line speed is above `max_speed`, as a
/// reason. Over such a stretch, GPS error of [`GPS_NOISE_METERS`] at both
/// ends moves a speed by under 2 m/s, so a runner is never near the limit while a bike, a car or a
/// jump is over it. Linear: the stretch's end only moves forward as its start does.
fn sustained_speed(track: &[TrackPoint], max_speed: f64) -> Option<String> {
    let mut along = Vec::with_capacity(track.len());
    let mut walked = 0.0;
    for (n, point) in track.iter().enumerate() {
        if n > 0 {
            walked += track[n - 1].haversine_to(*point);
        }
        along.push(walked);
    }
    let span = Duration::seconds(SUSTAINED_SECONDS);
    let mut j = 0;
    for (i, from) in track.iter().enumerate() {
        j = j.max(i + 1);
        while j < track.len()
            && (along[j] - along[i] < SUSTAINED_METERS || track[j].at - from.at < span)
        {
            j += 1;
        }
        let (to, seconds) = match track.get(j) {
            Some(to) => (to, (to.at - from.at).num_milliseconds() as f64 / 1000.0),
            // No later point is far enough in both: the stretch to the track's end, when it is
            // long enough along the path, is judged as if it lasted the whole span (a track
            // shorter than the span, or its last seconds, would otherwise go unjudged).
            None => match track.last() {
                Some(to) if along[track.len() - 1] - along[i] >= SUSTAINED_METERS => {
                    (to, SUSTAINED_SECONDS as f64)
                }
                _ => continue,
            },
        };
        let meters = from.haversine_to(*to);
        if meters / seconds > max_speed {
            return Some(format!(
                "{meters:.0} m in {seconds:.0} s ({:.0} km/h) is faster than the {:.0} km/h limit",
                meters / seconds * 3.6,
                max_speed * 3.6
            ));
        }
    }
    None
}

/// The cell of a point.
fn cell_of(point: Point, resolution: Resolution) -> Option<CellIndex> {
    LatLng::new(point.y(), point.x())
        .ok()
        .map(|at| at.to_cell(resolution))
}

/// Longest grid path asked of H3 at once; longer stretches are halved first.
const MAX_PATH_CELLS: i32 = 1_000;
/// How many times a stretch may be halved (2^24 pieces: far more than any track needs).
const MAX_SPLITS: u32 = 24;

/// Cells in the order first reached, each once, and the steps taken to reach them.
struct Reached {
    line: Vec<CellIndex>,
    seen: std::collections::HashSet<CellIndex>,
    steps: usize,
    most_steps: usize,
    /// Whether the way being stepped through captures its cells (else it only counts steps).
    drawing: bool,
}

impl Reached {
    /// `cell` as reached.
    fn reach(&mut self, cell: CellIndex) {
        if self.seen.insert(cell) {
            self.line.push(cell);
        }
    }

    /// A step into `cell`, reached if the way is drawn; false once there have been more than
    /// `most_steps`.
    fn step(&mut self, cell: CellIndex) -> bool {
        if self.drawing {
            self.reach(cell);
        }
        self.steps += 1;
        self.steps <= self.most_steps
    }
}

/// Steps through every cell the line from `a` to `b` passes through, `a`'s excluded; false when
/// `out` took more steps than it allows (and drawing stopped). A stretch H3 cannot draw at once
/// (across a pentagon or an icosahedron face, or too long) is halved along the great circle until
/// it can.
fn path(a: Point, b: Point, resolution: Resolution, splits: u32, out: &mut Reached) -> bool {
    let (Some(from), Some(to)) = (cell_of(a, resolution), cell_of(b, resolution)) else {
        return true;
    };
    if from == to {
        return true;
    }
    let drawn = from
        .grid_distance(to)
        .ok()
        .filter(|&cells| cells <= MAX_PATH_CELLS)
        .and_then(|_| from.grid_path_cells(to).ok())
        .and_then(|line| line.collect::<Result<Vec<_>, _>>().ok());
    match drawn {
        Some(line) => line.into_iter().skip(1).all(|cell| out.step(cell)),
        None if splits < MAX_SPLITS => {
            let middle = Haversine.point_at_ratio_between(a, b, 0.5);
            path(a, middle, resolution, splits + 1, out)
                && path(middle, b, resolution, splits + 1, out)
        }
        None => out.step(to),
    }
}

/// The cells `track` passes through, each once, in the order first reached: every fix's cell, and
/// the cells along the line between consecutive fixes unless the recording paused between them or
/// they are more than [`MAX_GAP_SECONDS`] apart (the runner was not seen in between). `None` when
/// that takes more than `most_steps` steps from cell to cell, revisits counted, the steps of the
/// ways not drawn too (a pause is no way around the allowance); drawing stops there.
pub fn cells(
    track: &[TrackPoint],
    resolution: Resolution,
    most_steps: usize,
) -> Option<Vec<CellIndex>> {
    let mut reached = Reached {
        line: Vec::new(),
        seen: std::collections::HashSet::new(),
        steps: 0,
        most_steps,
        drawing: true,
    };
    if let Some(first) = track.first().and_then(|p| cell_of(p.point(), resolution)) {
        reached.reach(first);
    }
    track
        .windows(2)
        .all(|pair| {
            let [from, to] = [pair[0], pair[1]];
            reached.drawing = from.drawn_to(to);
            let within = path(from.point(), to.point(), resolution, 0, &mut reached);
            if let Some(cell) = cell_of(to.point(), resolution) {
                reached.reach(cell);
            }
            within
        })
        .then_some(reached.line)
}

/// A cell as stored (H3 indexes leave the top bit clear, so they fit an `i64`).
pub fn stored(cell: CellIndex) -> i64 {
    i64::try_from(u64::from(cell)).unwrap_or(i64::MAX)
}

/// A stored cell back, if it is one.
pub fn unstored(cell: i64) -> Option<CellIndex> {
    u64::try_from(cell)
        .ok()
        .and_then(|bits| CellIndex::try_from(bits).ok())
}

/// A cell's boundary as `[latitude, longitude]` pairs.
pub fn boundary(cell: CellIndex) -> Vec<[f64; 2]> {
    cell.boundary()
        .iter()
        .map(|corner| [corner.lat(), corner.lng()])
        .collect()
}

/// The token rules: what one accrual adds per held cell, and the most `claimable` may hold.
#[derive(Clone, Copy, Debug)]
pub struct Mining {
    /// Tokens per held cell per accrual.
    pub per_cell: i64,
    /// Most `claimable` may hold.
    pub cap: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_shows_each_cells_captures_in_version_order_whatever_their_times() {
        let start = Utc::now();
        let capture = |cell: u64, version: i64, seconds: i64| CellCaptured {
            event_id: Uuid::nil(),
            cell,
            owner_id: Uuid::new_v4(),
            // Later versions stamped earlier: the instance that saved them runs behind.
            captured_at: start - Duration::seconds(seconds),
            version,
        };
        let mut shown = Shown::new(start);
        assert!(shown.news(&capture(7, 1, 0)));
        assert!(
            shown.news(&capture(7, 2, 5)),
            "newer, though stamped earlier"
        );
        assert!(!shown.news(&capture(7, 2, 5)), "the same capture again");
        assert!(!shown.news(&capture(7, 1, 0)), "an older capture, late");
        assert!(shown.news(&capture(8, 1, 0)), "cells are apart");
        assert!(shown.news(&capture(7, 0, 0)), "no version: as it comes");
        assert!(shown.news(&capture(7, 0, 0)), "no version: as it comes");
        assert_eq!(shown.since(start), start - CLOCK_LEEWAY);
        let later = start + Duration::hours(3);
        assert_eq!(shown.since(later), later - CATCH_UP_WINDOW);
    }

    const START: &str = "2026-05-01T08:00:00Z";

    fn start() -> DateTime<Utc> {
        START.parse().unwrap()
    }

    /// A point `north` and `east` meters from a spot in Paris, `seconds` after the start.
    fn at(north: f64, east: f64, seconds: f64) -> TrackPoint {
        let latitude = 48.8566 + north / 111_195.0;
        TrackPoint {
            latitude,
            longitude: 2.3522 + east / (111_195.0 * latitude.to_radians().cos()),
            at: start() + Duration::milliseconds((seconds * 1000.0) as i64),
            resumes: false,
        }
    }

    fn limits() -> Limits {
        Limits::new(start(), start() + Duration::hours(3), 40.0, 10)
    }

    /// A runner going east at `speed` m/s for `seconds`, one fix a second, each fix off by up to
    /// `drift` meters (drifting slowly, as GPS errors do) plus 2 m of fix-to-fix noise.
    fn runner(speed: f64, seconds: usize, drift: f64) -> Vec<TrackPoint> {
        (0..=seconds)
            .map(|s| {
                let t = s as f64;
                let noise = ((s * 7919) % 13) as f64 / 6.0 - 1.0;
                at(
                    drift * (t / 30.0).sin() + 2.0 * noise,
                    speed * t + drift * (t / 45.0).cos(),
                    t,
                )
            })
            .collect()
    }

    fn reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::Rejected(reason) => reason,
            Verdict::Saved(measured) => panic!("saved: {measured:?}"),
        }
    }

    fn saved(verdict: Verdict) -> Measured {
        match verdict {
            Verdict::Saved(measured) => measured,
            Verdict::Rejected(reason) => panic!("rejected: {reason}"),
        }
    }

    #[test]
    fn a_fast_real_runner_with_gps_noise_passes() {
        // 5.5 m/s (19.8 km/h, a fast 10 km pace) for 30 minutes, fixes off by up to 15 m.
        let measured = saved(judge(&runner(5.5, 1800, 15.0), limits()));
        assert!(
            (measured.distance_meters - 9900.0).abs() < 9900.0 * 0.05,
            "{}",
            measured.distance_meters
        );
        assert_eq!(measured.duration_seconds, 1800);
        assert!(measured.cells.len() > 100, "{}", measured.cells.len());
    }

    #[test]
    fn a_single_wild_fix_is_left_out_not_rejected() {
        let mut track = runner(4.0, 300, 5.0);
        track[150].latitude += 800.0 / 111_195.0;
        let measured = saved(judge(&track, limits()));
        assert_eq!(measured.glitches, 1);
        let clean = saved(judge(&runner(4.0, 300, 5.0), limits()));
        assert!((measured.distance_meters - clean.distance_meters).abs() < 50.0);
        // Three bad fixes in a row (leaving a tunnel) are left out too.
        let mut tunnel = runner(4.0, 300, 5.0);
        for point in &mut tunnel[100..103] {
            point.longitude -= 300.0 / 73_000.0;
        }
        assert_eq!(saved(judge(&tunnel, limits())).glitches, 3);
    }

    #[test]
    fn a_car_and_a_teleport_are_rejected() {
        // 60 km/h for five minutes.
        let car = reason(judge(&runner(60.0 / 3.6, 300, 5.0), limits()));
        assert!(car.contains("km/h limit"), "{car}");
        // A runner who jumps 5 km east in a second and runs on from there.
        let mut teleport = runner(3.0, 300, 0.0);
        for point in &mut teleport[150..] {
            *point = at(
                0.0,
                5000.0 + (point.at - start()).num_seconds() as f64 * 3.0,
                (point.at - start()).num_seconds() as f64,
            );
        }
        assert!(reason(judge(&teleport, limits())).contains("faster than"));
        // A bike at 45 km/h is over a 40 km/h limit too.
        assert!(reason(judge(&runner(12.5, 120, 0.0), limits())).contains("faster"));
    }

    /// Five spots 150 m from the centre, visited as a pentagram (each hop about 285 m, and a spot
    /// comes back only every fifth fix, too late to be a glitch), two fixes a second for ten
    /// minutes: every stretch of 30 s starts and ends at the same spot, so no speed rule sees the
    /// hops.
    fn pentagram(seconds: usize) -> Vec<TrackPoint> {
        (0..=2 * seconds)
            .map(|n| {
                let angle = (2 * n % 5) as f64 * std::f64::consts::TAU / 5.0;
                at(150.0 * angle.cos(), 150.0 * angle.sin(), n as f64 / 2.0)
            })
            .collect()
    }

    #[test]
    fn a_short_or_ending_jump_is_judged_over_the_whole_span() {
        // Across the world at one instant, for more fixes than a glitch at either end: no
        // stretch lasts 30 s, and the track was saved.
        let mut world = vec![at(0.0, 0.0, 10.0); 2];
        world.extend(
            [TrackPoint {
                longitude: 146.0,
                ..at(0.0, 0.0, 10.0)
            }; 4],
        );
        assert!(reason(judge(&world, limits())).contains("faster than"));
        // 20 s of running whose last five seconds are 1 km away.
        let mut ending = runner(3.0, 20, 0.0);
        for (s, point) in ending.iter_mut().enumerate().skip(16) {
            *point = at(0.0, 1000.0 + 3.0 * s as f64, s as f64);
        }
        assert!(reason(judge(&ending, limits())).contains("faster than"));
        // A real run's last seconds are still fine, and so is a wild last fix (400 m back along
        // the path, or off to the side): left out as a glitch, as a wild first fix is.
        saved(judge(&runner(5.5, 45, 10.0), limits()));
        for (north, east) in [(0.0, -400.0), (400.0, 0.0)] {
            let mut wild = runner(4.0, 300, 5.0);
            let last = wild.len() - 1;
            let end = wild[last];
            wild[last] = TrackPoint {
                latitude: end.latitude + north / 111_195.0,
                longitude: end.longitude + east / 73_000.0,
                ..end
            };
            assert_eq!(saved(judge(&wild, limits())).glitches, 1);
        }
    }

    #[test]
    fn hops_back_and_forth_stop_being_drawn_past_what_the_speed_allows() {
        let zigzag = pentagram(600);
        let why = reason(judge(&zigzag, limits()));
        assert!(why.contains("steps from cell to cell"), "{why}");
        // A pause before every hop changes nothing: the ways not drawn count their steps.
        let mut paused = pentagram(600);
        for point in &mut paused[1..] {
            point.resumes = true;
        }
        let why = reason(judge(&paused, limits()));
        assert!(why.contains("steps from cell to cell"), "{why}");
        // The same steps over an hour of laps of a 400 m track at 4 m/s, with GPS noise, pass:
        // revisits count as steps, and a real runner's are well inside the allowance.
        let laps: Vec<TrackPoint> = (0..=3600)
            .map(|s| {
                let angle = s as f64 * 4.0 / 64.0;
                let noise = ((s * 7919) % 13) as f64 / 6.0 - 1.0;
                at(
                    64.0 * angle.cos() + 3.0 * noise,
                    64.0 * angle.sin(),
                    s as f64,
                )
            })
            .collect();
        let measured = saved(judge(&laps, limits()));
        assert!(measured.cells.len() < 40, "{}", measured.cells.len());
        // Drawing stops at the allowance instead of going on: 16,000 km along the equator (about
        // 130,000 cells at resolution 10), allowed 100.
        let equator = |longitude: f64| TrackPoint {
            latitude: 0.0,
            longitude,
            at: start(),
            resumes: false,
        };
        let world = [equator(0.0), equator(144.0)];
        assert_eq!(cells(&world, Resolution::Ten, 100), None);
        let drawn = cells(&world, Resolution::Five, usize::MAX).unwrap();
        assert!(drawn.len() > 16_000_000 / 20_000, "{}", drawn.len());
    }

    #[test]
    fn short_disordered_or_out_of_window_tracks_are_rejected() {
        assert!(reason(judge(&[], limits())).contains("at least 2 points"));
        assert!(reason(judge(&[at(0.0, 0.0, 1.0)], limits())).contains("at least 2"));
        let disordered = [at(0.0, 0.0, 10.0), at(0.0, 5.0, 12.0), at(0.0, 10.0, 11.0)];
        assert!(reason(judge(&disordered, limits())).contains("point 3 is earlier"));
        let early = [at(0.0, 0.0, -3600.0), at(0.0, 5.0, -3598.0)];
        assert!(reason(judge(&early, limits())).contains("before the run started"));
        let late = [at(0.0, 0.0, 10.0), at(0.0, 5.0, 4.0 * 3600.0)];
        assert!(reason(judge(&late, limits())).contains("after it was saved"));
        // A device clock a few seconds off is not cheating.
        let skewed = [at(0.0, 0.0, -20.0), at(0.0, 30.0, -10.0)];
        saved(judge(&skewed, limits()));
    }

    /// A fix at `latitude`, `longitude`, `seconds` after the start.
    fn fix(latitude: f64, longitude: f64, seconds: i64) -> TrackPoint {
        TrackPoint {
            latitude,
            longitude,
            at: start() + Duration::seconds(seconds),
            resumes: false,
        }
    }

    #[test]
    fn cells_join_sparse_points_along_the_line() {
        // Two fixes 500 m apart, a minute apart (the longest gap still drawn): every cell
        // between them, each a neighbour of the last.
        let track = [at(0.0, 0.0, 0.0), at(0.0, 500.0, 60.0)];
        let measured = saved(judge(&track, limits()));
        // A resolution-10 cell is at most about 152 m across: a 500 m line crosses at least three
        // borders, where the two fixes' own cells are two.
        assert!(measured.cells.len() > 500 / 152, "{:?}", measured.cells);
        for pair in measured.cells.windows(2) {
            assert!(pair[0].is_neighbor_with(pair[1]).unwrap(), "{pair:?}");
        }
    }

    /// A fix's own cell at resolution 10, as H3 names it.
    fn own_cell(point: TrackPoint) -> CellIndex {
        LatLng::new(point.latitude, point.longitude)
            .unwrap()
            .to_cell(Resolution::Ten)
    }

    #[test]
    fn pauses_and_long_gaps_capture_no_cells_between() {
        // A minute east, then (a bus ride while the watch was paused) the next segment 1.2 km on,
        // five minutes later: the cells between the two segments are not the runner's.
        let mut track = runner(3.0, 60, 0.0);
        let resumed: Vec<TrackPoint> = (0..=60)
            .map(|s| at(0.0, 1380.0 + 3.0 * s as f64, 360.0 + s as f64))
            .collect();
        let pause = track.len();
        track.extend(&resumed);
        track[pause].resumes = true;
        let paused = saved(judge(&track, limits()));
        let before = saved(judge(&track[..pause], limits()));
        let after = saved(judge(&track[pause..], limits()));
        let mut expected: Vec<CellIndex> = before.cells.clone();
        expected.extend(
            after
                .cells
                .iter()
                .filter(|cell| !before.cells.contains(cell)),
        );
        assert_eq!(
            paused.cells, expected,
            "the two segments' cells, nothing between"
        );
        let middle = own_cell(at(0.0, 800.0, 0.0));
        assert!(!paused.cells.contains(&middle));
        assert!(
            (paused.distance_meters - before.distance_meters - after.distance_meters).abs() < 1.0,
            "no distance across the pause: {}",
            paused.distance_meters
        );
        assert_eq!(paused.duration_seconds, 420, "elapsed, the pause included");

        // The same without the pause mark: a five-minute gap between fixes (the signal was lost).
        // The distance counts the straight line; the cells along it are not captured.
        track[pause].resumes = false;
        let gap = saved(judge(&track, limits()));
        assert_eq!(gap.cells, expected);
        let across = track[pause - 1].distance_to(track[pause]);
        assert!(
            (gap.distance_meters - paused.distance_meters - across).abs() < 1.0,
            "{} vs {} + {across}",
            gap.distance_meters,
            paused.distance_meters
        );

        // A glitch that begins the next segment does not lose the pause: the next fix resumes.
        let first = runner(3.0, 60, 0.0);
        let second: Vec<TrackPoint> = (0..=60)
            .map(|s| at(0.0, 240.0 + 3.0 * s as f64, 80.0 + s as f64))
            .collect();
        let mut glitched = first.clone();
        glitched.extend(&second);
        glitched[first.len()].resumes = true;
        glitched[first.len()].latitude += 800.0 / 111_195.0;
        let mut clean = first.clone();
        clean.extend(&second[1..]);
        clean[first.len()].resumes = true;
        let measured = saved(judge(&glitched, limits()));
        let expected = saved(judge(&clean, limits()));
        assert_eq!(measured.glitches, 1);
        assert_eq!(measured.cells, expected.cells);
        assert!((measured.distance_meters - expected.distance_meters).abs() < 1e-6);
        clean[first.len()].resumes = false;
        let joined = saved(judge(&clean, limits()));
        assert!(
            joined.distance_meters > expected.distance_meters + 50.0,
            "the pause took the 63 m between the segments out"
        );

        // A pause is judged for speed all the same: 5 km in a minute is a car, not a runner.
        let mut driven = runner(3.0, 60, 0.0);
        driven.extend((0..=60).map(|s| TrackPoint {
            resumes: s == 0,
            ..at(0.0, 5180.0 + 3.0 * s as f64, 120.0 + s as f64)
        }));
        assert!(reason(judge(&driven, limits())).contains("faster than"));
    }

    #[test]
    fn a_long_stretch_and_a_pentagon_never_fail() {
        // 3,000 km in one stretch: halved until H3 can draw each piece.
        let far = [fix(48.0, 2.0, 0), fix(40.0, 35.0, 30)];
        let line = cells(&far, Resolution::Five, usize::MAX).unwrap();
        assert!(line.len() > 100);
        // Around the pentagon at resolution 5 near (64.7, 10.5).
        let pentagon = [fix(64.0, 9.0, 0), fix(65.5, 12.0, 30)];
        assert!(
            cells(&pentagon, Resolution::Five, usize::MAX)
                .unwrap()
                .len()
                > 3
        );
    }

    #[test]
    fn coordinates_are_checked_and_named() {
        let bad = vec![
            at(0.0, 0.0, 0.0),
            TrackPoint {
                latitude: 91.0,
                ..at(0.0, 0.0, 1.0)
            },
        ];
        let field = |result: Result<Vec<TrackPoint>>| match result {
            Err(Error::BadInput { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(parse_track(bad, "track")), "track[1].latitude");
        let nan = vec![TrackPoint {
            longitude: f64::NAN,
            ..at(0.0, 0.0, 0.0)
        }];
        assert_eq!(field(parse_track(nan, "track")), "track[0].longitude");
    }

    #[test]
    fn cells_are_stored_and_read_back() {
        let cell = cell_of(Point::new(2.35, 48.85), Resolution::Ten).unwrap();
        assert_eq!(unstored(stored(cell)), Some(cell));
        assert_eq!(boundary(cell).len(), 6);
    }
}
