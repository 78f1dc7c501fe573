//! A streaming reader for the track points of a GPX file.
//!
//! [`read_track`] reads the `<trkpt>` elements of every `<trkseg>` of every
//! `<trk>`, in file order, and keeps only their latitude, longitude and time,
//! and where a new segment begins (the recording was paused there).
//! It reads XML events one at a time from a [`BufRead`] and never builds a tree
//! of the document: everything else (`<metadata>`, `<wpt>`, `<rte>`,
//! `<extensions>` such as Garmin's heart rate and cadence or Strava's power,
//! `<ele>`, `<name>`, GPX 1.0's `<course>` and `<speed>`, …) is skipped event by
//! event through one reused buffer, so memory grows with the number of points
//! and the size of the largest single tag or text run, not with the file (the
//! caller still caps the upload's size, which bounds that largest run).
//!
//! It accepts GPX 1.0 and 1.1, any namespace prefix or a default namespace
//! (elements are matched on their local names), a missing or unknown `version`
//! attribute, a UTF-8 byte order mark, an XML declaration, comments and a
//! doctype. The text must be UTF-8 (or its ASCII subset), as every current
//! exporter writes it; other encodings are refused rather than guessed.
//!
//! It refuses, with a message fit to show the person who uploaded the file:
//! a file whose root element is not `<gpx>` or that is not UTF-8 XML at all,
//! XML that is not well-formed or is cut short, a track point without a valid
//! `lat`/`lon` or without a readable `<time>` (runs are judged by their speed),
//! a file without track points, and a file with more than [`MAX_POINTS`]
//! points (reading stops as soon as that limit is passed). Elements nested
//! more than 64 deep are refused too: no real GPX file comes close.
//!
//! It is built on `quick-xml` rather than the `gpx` crate because `gpx::read`
//! returns the whole document (every track, route and waypoint with all their
//! fields) in memory, and it rejects real exports: its parser
//! (`src/parser/gpx.rs` in georust/gpx) fails on a `<gpx>` without a
//! `version` attribute, and on a version other than "1.0" or "1.1" (some
//! watch apps write their own app version there).

use std::io::BufRead;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

/// One track point as read from the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpxPoint {
    /// Degrees north, from -90 to 90.
    pub latitude: f64,
    /// Degrees east, from -180 to 180.
    pub longitude: f64,
    /// When the point was recorded.
    pub at: DateTime<Utc>,
    /// Whether the recording resumed here: the point begins a `<trkseg>` (or a
    /// `<trk>`) after an earlier point. False for the file's first point.
    pub resumes: bool,
}

/// Most points a file may hold.
pub const MAX_POINTS: usize = 100_000;

/// Deepest element nesting accepted (a Garmin heart rate sits at depth 7).
const MAX_DEPTH: usize = 64;

/// Longest element name quoted back in an error message, in characters.
const MAX_QUOTED_NAME: usize = 40;

/// Reads every `trkpt` of every `trkseg` of every `trk`, in file order.
///
/// # Errors
///
/// A human-readable reason, fit for a `BAD_USER_INPUT` error shown to the
/// user, when the file is not GPX, is not well-formed XML, has a track point
/// without valid coordinates or time, has no track points, or has more than
/// [`MAX_POINTS`] of them.
pub fn read_track<R: BufRead>(reader: R) -> Result<Vec<GpxPoint>, String> {
    let mut gpx = TrackReader::new(reader);
    if gpx.read_root()? {
        gpx.read_gpx()?;
    }
    if gpx.points.is_empty() {
        return Err("the file has no track points".to_owned());
    }
    Ok(gpx.points)
}

/// An element this reader tells apart, by local name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tag {
    /// `<trk>`: a track.
    Trk,
    /// `<trkseg>`: a run of points without a pause.
    Trkseg,
    /// `<trkpt>`, with its coordinates as read from its attributes.
    Trkpt(Result<Position, BadPoint>),
    /// `<time>`.
    Time,
    /// Any other element.
    Other,
}

impl Tag {
    /// Classifies a start tag, reading the coordinates of a `<trkpt>`.
    fn of(start: &BytesStart<'_>) -> Self {
        match start.local_name().as_ref() {
            "trk" => Self::Trk,
            "trkseg" => Self::Trkseg,
            "trkpt" => Self::Trkpt(Position::of(start)),
            "time" => Self::Time,
            _ => Self::Other,
        }
    }
}

/// An element's start, detached from the event buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Element {
    /// Which element it is.
    tag: Tag,
    /// Whether it was written `<name/>`, so that no content or end tag follows.
    empty: bool,
}

/// What one XML event means to this reader.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// A start tag or an empty element.
    Element(Element),
    /// An end tag.
    Close,
    /// The end of the input.
    Eof,
    /// Text, a comment or anything else that carries no element.
    Other,
}

/// The coordinates of a track point.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Position {
    /// Degrees north.
    latitude: f64,
    /// Degrees east.
    longitude: f64,
}

impl Position {
    /// Reads and checks the `lat` and `lon` attributes of a `<trkpt>`.
    fn of(start: &BytesStart<'_>) -> Result<Self, BadPoint> {
        let mut latitude = None;
        let mut longitude = None;
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|_| BadPoint::Malformed)?;
            let slot = match attribute.key.as_ref() {
                "lat" => &mut latitude,
                "lon" => &mut longitude,
                _ => continue,
            };
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|_| BadPoint::Malformed)?;
            *slot = Some(value.into_owned());
        }
        Ok(Self {
            latitude: Axis::Latitude.read(latitude.as_deref())?,
            longitude: Axis::Longitude.read(longitude.as_deref())?,
        })
    }
}

/// One of the two coordinates of a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Axis {
    /// The `lat` attribute.
    Latitude,
    /// The `lon` attribute.
    Longitude,
}

impl Axis {
    /// The name of the attribute holding this coordinate.
    const fn attribute(self) -> &'static str {
        match self {
            Self::Latitude => "lat",
            Self::Longitude => "lon",
        }
    }

    /// The largest absolute value this coordinate may take.
    const fn limit(self) -> f64 {
        match self {
            Self::Latitude => 90.0,
            Self::Longitude => 180.0,
        }
    }

    /// Parses an attribute value as this coordinate.
    fn read(self, value: Option<&str>) -> Result<f64, BadPoint> {
        let value = value.ok_or(BadPoint::Missing(self))?;
        let degrees: f64 = value.trim().parse().map_err(|_| BadPoint::Invalid(self))?;
        if degrees.is_finite() && degrees.abs() <= self.limit() {
            Ok(degrees)
        } else {
            Err(BadPoint::Invalid(self))
        }
    }
}

/// Why the attributes of a track point could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BadPoint {
    /// The attribute is absent.
    Missing(Axis),
    /// The attribute is not a number within range.
    Invalid(Axis),
    /// The attributes are not well-formed XML.
    Malformed,
}

impl BadPoint {
    /// The message for the user about point `number` (1-based).
    fn message(self, number: usize) -> String {
        match self {
            Self::Missing(axis) => {
                format!(
                    "point {number} has no {axis} ({} attribute)",
                    axis.attribute()
                )
            }
            Self::Invalid(axis) => format!(
                "point {number} has an invalid {axis}: {} must be a number from -{limit} to {limit}",
                axis.attribute(),
                limit = axis.limit(),
            ),
            Self::Malformed => format!("point {number} has malformed attributes"),
        }
    }
}

impl std::fmt::Display for Axis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Latitude => "latitude",
            Self::Longitude => "longitude",
        })
    }
}

/// The reading state: the XML reader, its one event buffer and the points so far.
struct TrackReader<R> {
    /// The event reader over the input.
    xml: Reader<R>,
    /// The buffer every event is read into, cleared before each one.
    buf: Vec<u8>,
    /// How many elements are open.
    depth: usize,
    /// The track points read so far.
    points: Vec<GpxPoint>,
    /// Whether the next point is the first of its segment.
    segment_begins: bool,
}

impl<R: BufRead> TrackReader<R> {
    /// Starts reading `input`.
    fn new(input: R) -> Self {
        let mut xml = Reader::from_reader(input);
        let config = xml.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Self {
            xml,
            buf: Vec::new(),
            depth: 0,
            points: Vec::new(),
            segment_begins: true,
        }
    }

    /// Reads up to and including the root element, which must be `<gpx>`.
    ///
    /// Returns whether the root has content (it is not `<gpx/>`).
    fn read_root(&mut self) -> Result<bool, String> {
        loop {
            self.buf.clear();
            let event = self
                .xml
                .read_event_into(&mut self.buf)
                .map_err(|_| not_xml())?;
            let (root, empty) = match event {
                Event::Start(start) => (start, false),
                Event::Empty(start) => (start, true),
                Event::Text(text) if text.trim().is_empty() => continue,
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => continue,
                Event::Eof => return Err("the file is empty".to_owned()),
                _ => return Err(not_xml()),
            };
            let name = root.local_name();
            if name.as_ref() != "gpx" {
                return Err(format!(
                    "the file is not GPX: the root element is <{}>",
                    quoted_name(name.as_ref())
                ));
            }
            if !empty {
                self.depth = 1;
            }
            return Ok(!empty);
        }
    }

    /// Reads the content of `<gpx>` up to its end tag, descending into `<trk>`.
    fn read_gpx(&mut self) -> Result<(), String> {
        self.read_children(|this, child| match child.tag {
            Tag::Trk if !child.empty => this.read_trk(),
            _ => this.skip(child),
        })
    }

    /// Reads the content of a `<trk>` up to its end tag, descending into `<trkseg>`.
    fn read_trk(&mut self) -> Result<(), String> {
        self.read_children(|this, child| match child.tag {
            Tag::Trkseg if !child.empty => this.read_trkseg(),
            _ => this.skip(child),
        })
    }

    /// Reads the content of a `<trkseg>` up to its end tag, keeping its `<trkpt>`s.
    fn read_trkseg(&mut self) -> Result<(), String> {
        self.segment_begins = true;
        self.read_children(|this, child| match child.tag {
            Tag::Trkpt(position) => this.read_point(position, child.empty),
            _ => this.skip(child),
        })
    }

    /// Reads one `<trkpt>` whose start tag has just been read, and keeps it.
    fn read_point(
        &mut self,
        position: Result<Position, BadPoint>,
        empty: bool,
    ) -> Result<(), String> {
        let number = self.points.len() + 1;
        if number > MAX_POINTS {
            return Err(format!("the file holds more than {MAX_POINTS} points"));
        }
        let position = position.map_err(|bad| bad.message(number))?;
        let time = if empty { None } else { self.read_point_time()? };
        let time = time.ok_or_else(|| format!("point {number} has no <time>"))?;
        let at = parse_time(&time).ok_or_else(|| {
            format!("point {number} has an invalid <time>: it must be a date and time such as 2024-05-01T08:00:00Z")
        })?;
        self.points.push(GpxPoint {
            latitude: position.latitude,
            longitude: position.longitude,
            at,
            resumes: self.segment_begins && number > 1,
        });
        self.segment_begins = false;
        Ok(())
    }

    /// Reads the content of a `<trkpt>` up to its end tag and returns the text
    /// of its first `<time>`, if it has one.
    fn read_point_time(&mut self) -> Result<Option<String>, String> {
        let mut time = None;
        self.read_children(|this, child| {
            if child.tag != Tag::Time || time.is_some() {
                return this.skip(child);
            }
            time = Some(if child.empty {
                String::new()
            } else {
                this.read_text()?
            });
            Ok(())
        })?;
        Ok(time)
    }

    /// Reads an element's content up to its end tag and returns its text,
    /// leaving out the content of any child element.
    fn read_text(&mut self) -> Result<String, String> {
        let mut text = String::new();
        loop {
            match self.next(Some(&mut text))? {
                Step::Element(child) => self.skip(child)?,
                Step::Close => return Ok(text),
                Step::Eof => return Err(cut_short()),
                Step::Other => {}
            }
        }
    }

    /// Reads an element's content up to its end tag, handing each child
    /// element (whose start tag has just been read) to `child`.
    fn read_children(
        &mut self,
        mut child: impl FnMut(&mut Self, Element) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            match self.next(None)? {
                Step::Element(element) => child(self, element)?,
                Step::Close => return Ok(()),
                Step::Eof => return Err(cut_short()),
                Step::Other => {}
            }
        }
    }

    /// Skips an element whose start tag has just been read, up to its end tag.
    fn skip(&mut self, element: Element) -> Result<(), String> {
        let mut open = usize::from(!element.empty);
        while open > 0 {
            match self.next(None)? {
                Step::Element(child) if !child.empty => open += 1,
                Step::Close => open -= 1,
                Step::Eof => return Err(cut_short()),
                Step::Element(_) | Step::Other => {}
            }
        }
        Ok(())
    }

    /// Reads the next event, appending any character data to `text` if given.
    fn next(&mut self, text: Option<&mut String>) -> Result<Step, String> {
        self.buf.clear();
        let event = match self.xml.read_event_into(&mut self.buf) {
            Ok(event) => event,
            Err(error) => return Err(self.describe(&error)),
        };
        let step = match event {
            Event::Start(start) => Step::Element(Element {
                tag: Tag::of(&start),
                empty: false,
            }),
            Event::Empty(start) => Step::Element(Element {
                tag: Tag::of(&start),
                empty: true,
            }),
            Event::End(_) => Step::Close,
            Event::Eof => Step::Eof,
            Event::Text(content) => append(text, &content),
            Event::CData(content) => append(text, &content),
            Event::GeneralRef(reference) => append(text, &resolve(&reference)),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => Step::Other,
        };
        self.track_depth(step)?;
        Ok(step)
    }

    /// Keeps count of open elements and refuses too deep a nesting.
    fn track_depth(&mut self, step: Step) -> Result<(), String> {
        match step {
            Step::Element(Element { empty: false, .. }) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!(
                        "the file nests elements more than {MAX_DEPTH} deep"
                    ));
                }
            }
            Step::Close => self.depth = self.depth.saturating_sub(1),
            Step::Element(_) | Step::Eof | Step::Other => {}
        }
        Ok(())
    }

    /// The message for the user about an error of the XML reader.
    fn describe(&self, error: &quick_xml::Error) -> String {
        match error {
            quick_xml::Error::Io(_) => "the file could not be read".to_owned(),
            quick_xml::Error::Encoding(_) => format!(
                "the file is not UTF-8 text near byte {}",
                self.xml.buffer_position()
            ),
            _ => format!(
                "the file is not well-formed XML at byte {}",
                self.xml.error_position()
            ),
        }
    }
}

/// Appends character data to `text` when text is being collected.
fn append(text: Option<&mut String>, content: &str) -> Step {
    if let Some(text) = text {
        text.push_str(content);
    }
    Step::Other
}

/// The text an entity or character reference such as `&amp;` or `&#48;`
/// stands for; an unknown one is kept as written, which no time parses.
fn resolve(reference: &BytesRef<'_>) -> String {
    if let Ok(Some(character)) = reference.resolve_char_ref() {
        return character.to_string();
    }
    match resolve_predefined_entity(reference) {
        Some(replacement) => replacement.to_owned(),
        None => format!("&{};", &**reference),
    }
}

/// Parses a GPX time: RFC 3339 / ISO 8601 with `Z` or an offset (with or
/// without a colon), with or without fractional seconds; a time without any
/// zone is read as UTC. A year outside [`crate::model::YEARS`] does not parse.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|at| at.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|at| at.and_utc())
        })
        .ok()
        .filter(|at| crate::model::YEARS.contains(&at.year()))
}

/// An element name, shortened to be quoted back in a message.
fn quoted_name(name: &str) -> String {
    let mut quoted: String = name.chars().take(MAX_QUOTED_NAME).collect();
    if quoted.len() < name.len() {
        quoted.push('…');
    }
    quoted
}

/// The message for input that is not XML at all.
fn not_xml() -> String {
    "the file is not GPX: it is not a UTF-8 XML document".to_owned()
}

/// The message for a file that ends inside the `<gpx>` element.
fn cut_short() -> String {
    "the file is not well-formed XML: it ends before </gpx> (it may be cut short)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Reads a GPX document given as a string.
    fn read(xml: &str) -> Result<Vec<GpxPoint>, String> {
        read_track(xml.as_bytes())
    }

    /// 2024-05-01 at the given UTC time, with milliseconds.
    fn at(hour: u32, minute: u32, second: u32, millis: u32) -> DateTime<Utc> {
        let Some(time) = Utc
            .with_ymd_and_hms(2024, 5, 1, hour, minute, second)
            .single()
        else {
            panic!("bad test time");
        };
        time + chrono::Duration::milliseconds(i64::from(millis))
    }

    /// A plain GPX 1.1 document around the given `<trk>` content.
    fn gpx11(tracks: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">{tracks}</gpx>"#
        )
    }

    /// A track point with the given coordinates and time.
    fn trkpt(lat: &str, lon: &str, time: &str) -> String {
        format!(r#"<trkpt lat="{lat}" lon="{lon}"><time>{time}</time></trkpt>"#)
    }

    /// The error message for a document that must be refused.
    fn error(xml: &str) -> String {
        match read(xml) {
            Ok(points) => panic!("expected an error, read {} points", points.len()),
            Err(message) => message,
        }
    }

    #[test]
    fn reads_gpx_11_with_garmin_extensions_and_default_namespace() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<gpx creator="StravaGPX" version="1.1" xmlns="http://www.topografix.com/GPX/1/1"
     xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <!-- exported -->
 <metadata><time>2024-05-01T07:00:00Z</time></metadata>
 <trk>
  <name>Morning Run</name>
  <type>running</type>
  <trkseg>
   <trkpt lat="48.8566230" lon="2.3522190">
    <ele>35.2</ele>
    <time>2024-05-01T08:00:00Z</time>
    <extensions>
     <gpxtpx:TrackPointExtension>
      <gpxtpx:hr>131</gpxtpx:hr>
      <gpxtpx:cad>84</gpxtpx:cad>
     </gpxtpx:TrackPointExtension>
     <power>250</power>
    </extensions>
   </trkpt>
   <trkpt lat="48.8566500" lon="2.3522600">
    <ele>35.4</ele>
    <time>2024-05-01T08:00:02Z</time>
    <extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>133</gpxtpx:hr></gpxtpx:TrackPointExtension></extensions>
   </trkpt>
  </trkseg>
 </trk>
</gpx>
"#;
        let points = read(xml);
        assert_eq!(
            points,
            Ok(vec![
                GpxPoint {
                    latitude: 48.856_623,
                    longitude: 2.352_219,
                    at: at(8, 0, 0, 0),
                    resumes: false,
                },
                GpxPoint {
                    latitude: 48.856_65,
                    longitude: 2.352_26,
                    at: at(8, 0, 2, 0),
                    resumes: false,
                },
            ])
        );
    }

    #[test]
    fn reads_gpx_10_with_course_and_speed() {
        let xml = r#"<?xml version="1.0"?>
<gpx version="1.0" creator="GPSBabel" xmlns="http://www.topografix.com/GPX/1/0">
<time>2024-05-01T07:59:00Z</time>
<bounds minlat="48.85" minlon="2.35" maxlat="48.86" maxlon="2.36"/>
<trk><name>run</name><trkseg>
<trkpt lat="48.850001" lon="2.350001"><ele>35</ele><time>2024-05-01T08:00:00Z</time><course>87.5</course><speed>3.1</speed></trkpt>
<trkpt lat="48.850010" lon="2.350040"><ele>35</ele><time>2024-05-01T08:00:01Z</time><course>88.0</course><speed>3.0</speed></trkpt>
</trkseg></trk>
</gpx>"#;
        let Ok(points) = read(xml) else {
            panic!("GPX 1.0 refused")
        };
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].latitude, 48.850_01);
        assert_eq!(points[1].at, at(8, 0, 1, 0));
    }

    #[test]
    fn matches_prefixed_elements_on_local_names() {
        let xml = r#"<gpx:gpx xmlns:gpx="http://www.topografix.com/GPX/1/1" version="1.1">
<gpx:trk><gpx:trkseg>
<gpx:trkpt lat="48.85" lon="2.35"><gpx:time>2024-05-01T08:00:00Z</gpx:time></gpx:trkpt>
</gpx:trkseg></gpx:trk></gpx:gpx>"#;
        let Ok(points) = read(xml) else {
            panic!("prefixed GPX refused")
        };
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].at, at(8, 0, 0, 0));
    }

    #[test]
    fn accepts_a_missing_version() {
        let xml = format!(
            r#"<gpx creator="old tool"><trk><trkseg>{}</trkseg></trk></gpx>"#,
            trkpt("48.85", "2.35", "2024-05-01T08:00:00Z")
        );
        assert_eq!(read(&xml).map(|points| points.len()), Ok(1));
    }

    #[test]
    fn concatenates_segments_and_tracks_in_order_marking_where_each_resumes() {
        let xml = gpx11(&format!(
            "<trk><trkseg>{}{}</trkseg></trk><trk><trkseg>{}</trkseg><trkseg/><trkseg>{}</trkseg></trk>",
            trkpt("48.1", "2.1", "2024-05-01T08:00:00Z"),
            trkpt("48.2", "2.2", "2024-05-01T08:00:01Z"),
            trkpt("48.3", "2.3", "2024-05-01T08:00:02Z"),
            trkpt("48.4", "2.4", "2024-05-01T08:05:00Z"),
        ));
        let Ok(points) = read(&xml) else {
            panic!("refused")
        };
        let latitudes: Vec<f64> = points.iter().map(|point| point.latitude).collect();
        assert_eq!(latitudes, [48.1, 48.2, 48.3, 48.4]);
        assert_eq!(points[3].at, at(8, 5, 0, 0));
        // The second track and the third segment resume the recording; the empty segment
        // between them is no point.
        let resumes: Vec<bool> = points.iter().map(|point| point.resumes).collect();
        assert_eq!(resumes, [false, false, true, true]);
    }

    #[test]
    fn ignores_waypoints_and_routes() {
        let xml = gpx11(&format!(
            r#"<wpt lat="10" lon="10"><time>2024-05-01T09:00:00Z</time><name>start</name></wpt>
<rte><name>plan</name><rtept lat="11" lon="11"><time>2024-05-01T09:00:00Z</time></rtept></rte>
<trk><trkseg>{}</trkseg></trk>
<wpt lat="12" lon="12"/>"#,
            trkpt("48.85", "2.35", "2024-05-01T08:00:00Z")
        ));
        let Ok(points) = read(&xml) else {
            panic!("refused")
        };
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].latitude, 48.85);
    }

    #[test]
    fn ignores_points_outside_a_segment() {
        let xml = gpx11(&format!(
            "<trk>{}<trkseg>{}</trkseg></trk>",
            trkpt("1", "1", "2024-05-01T08:00:00Z"),
            trkpt("48.85", "2.35", "2024-05-01T08:00:01Z")
        ));
        let Ok(points) = read(&xml) else {
            panic!("refused")
        };
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].latitude, 48.85);
    }

    #[test]
    fn skips_a_utf8_bom() {
        let xml = format!(
            "\u{feff}{}",
            gpx11(&format!(
                "<trk><trkseg>{}</trkseg></trk>",
                trkpt("48.85", "2.35", "2024-05-01T08:00:00Z")
            ))
        );
        assert_eq!(read(&xml).map(|points| points.len()), Ok(1));
    }

    #[test]
    fn reads_fractional_seconds_and_offsets() {
        let xml = gpx11(&format!(
            "<trk><trkseg>{}{}{}{}{}</trkseg></trk>",
            trkpt("48.85", "2.35", "2024-05-01T08:00:01.250Z"),
            trkpt("48.85", "2.35", "2024-05-01T10:00:02+02:00"),
            trkpt("48.85", "2.35", "2024-05-01T10:00:03.5+0200"),
            trkpt("48.85", "2.35", " 2024-05-01T08:00:04 "),
            trkpt("48.85", "2.35", "2024-05-01T03:30:05-04:30"),
        ));
        let Ok(points) = read(&xml) else {
            panic!("refused")
        };
        let times: Vec<DateTime<Utc>> = points.iter().map(|point| point.at).collect();
        assert_eq!(
            times,
            [
                at(8, 0, 1, 250),
                at(8, 0, 2, 0),
                at(8, 0, 3, 500),
                at(8, 0, 4, 0),
                at(8, 0, 5, 0)
            ]
        );
    }

    #[test]
    fn reads_time_split_by_comments_cdata_and_references() {
        let xml = gpx11(
            r#"<trk><trkseg><trkpt lat="4&#56;.85" lon="2.35"><time>2024-05-01T08:<!-- x -->00:<![CDATA[0]]>&#55;Z</time></trkpt></trkseg></trk>"#,
        );
        let Ok(points) = read(&xml) else {
            panic!("refused")
        };
        assert_eq!(points[0].latitude, 48.85);
        assert_eq!(points[0].at, at(8, 0, 7, 0));
    }

    #[test]
    fn refuses_another_root_element() {
        let message = error(
            r#"<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document/></kml>"#,
        );
        assert_eq!(message, "the file is not GPX: the root element is <kml>");
    }

    #[test]
    fn refuses_html() {
        let message = error(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>502</title></head><body><p>Bad gateway<br></body></html>",
        );
        assert_eq!(message, "the file is not GPX: the root element is <html>");
    }

    #[test]
    fn refuses_json() {
        let message = error(r#"{"type": "FeatureCollection", "features": []}"#);
        assert!(message.starts_with("the file is not GPX"), "{message}");
    }

    #[test]
    fn refuses_binary_bytes() {
        let png =
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
        let Err(message) = read_track(&png[..]) else {
            panic!("PNG accepted")
        };
        assert!(message.starts_with("the file is not GPX"), "{message}");
    }

    #[test]
    fn refuses_an_empty_file() {
        assert_eq!(error(""), "the file is empty");
        assert_eq!(error("  \n"), "the file is empty");
    }

    #[test]
    fn refuses_malformed_xml_with_its_position() {
        let xml = gpx11(&format!(
            "<trk><trkseg>{}</trkseg></trkk></gpx>",
            trkpt("48.85", "2.35", "2024-05-01T08:00:00Z")
        ));
        let message = error(&xml);
        assert!(
            message.starts_with("the file is not well-formed XML at byte "),
            "{message}"
        );
    }

    #[test]
    fn refuses_a_cut_file() {
        let xml = gpx11(&format!(
            "<trk><trkseg>{}",
            trkpt("48.85", "2.35", "2024-05-01T08:00:00Z")
        ));
        let cut = xml.trim_end_matches("</gpx>");
        assert!(error(cut).contains("ends before </gpx>"));
    }

    #[test]
    fn refuses_a_point_without_time() {
        let xml = gpx11(&format!(
            r#"<trk><trkseg>{}<trkpt lat="48.85" lon="2.35"><ele>35</ele></trkpt></trkseg></trk>"#,
            trkpt("48.85", "2.35", "2024-05-01T08:00:00Z")
        ));
        assert_eq!(error(&xml), "point 2 has no <time>");
        let empty = gpx11(r#"<trk><trkseg><trkpt lat="48.85" lon="2.35"/></trkseg></trk>"#);
        assert_eq!(error(&empty), "point 1 has no <time>");
    }

    #[test]
    fn refuses_an_unreadable_time() {
        for time in ["yesterday", "", "2024-05-01", "2024-13-01T08:00:00Z"] {
            let xml = gpx11(&format!(
                "<trk><trkseg>{}</trkseg></trk>",
                trkpt("48.85", "2.35", time)
            ));
            assert!(
                error(&xml).starts_with("point 1 has an invalid <time>"),
                "{time}"
            );
        }
    }

    #[test]
    fn refuses_a_bad_latitude() {
        for lat in ["abc", "NaN", "inf", "90.5", "-91", ""] {
            let xml = gpx11(&format!(
                "<trk><trkseg>{}{}{}</trkseg></trk>",
                trkpt("48.85", "2.35", "2024-05-01T08:00:00Z"),
                trkpt("48.85", "2.35", "2024-05-01T08:00:01Z"),
                trkpt(lat, "2.35", "2024-05-01T08:00:02Z"),
            ));
            let message = error(&xml);
            assert!(
                message.starts_with("point 3 has an invalid latitude"),
                "{lat}: {message}"
            );
        }
    }

    #[test]
    fn refuses_an_out_of_range_longitude() {
        let xml = gpx11(&format!(
            "<trk><trkseg>{}</trkseg></trk>",
            trkpt("48.85", "180.000001", "2024-05-01T08:00:00Z")
        ));
        assert_eq!(
            error(&xml),
            "point 1 has an invalid longitude: lon must be a number from -180 to 180"
        );
    }

    #[test]
    fn refuses_missing_coordinates() {
        let xml = gpx11(
            r#"<trk><trkseg><trkpt lon="2.35"><time>2024-05-01T08:00:00Z</time></trkpt></trkseg></trk>"#,
        );
        assert_eq!(error(&xml), "point 1 has no latitude (lat attribute)");
        let xml = gpx11(
            r#"<trk><trkseg><trkpt lat="48.85"><time>2024-05-01T08:00:00Z</time></trkpt></trkseg></trk>"#,
        );
        assert_eq!(error(&xml), "point 1 has no longitude (lon attribute)");
    }

    #[test]
    fn refuses_a_file_without_points() {
        let no_points = "the file has no track points";
        assert_eq!(error(&gpx11("")), no_points);
        assert_eq!(error("<gpx/>"), no_points);
        assert_eq!(
            error(&gpx11("<trk><name>empty</name><trkseg></trkseg></trk>")),
            no_points
        );
        let only_waypoints =
            gpx11(r#"<wpt lat="48.85" lon="2.35"><time>2024-05-01T08:00:00Z</time></wpt>"#);
        assert_eq!(error(&only_waypoints), no_points);
    }

    #[test]
    fn refuses_more_than_max_points_as_soon_as_passed() {
        let point = trkpt("48.85", "2.35", "2024-05-01T08:00:00Z");
        let mut xml = String::from(r#"<gpx version="1.1"><trk><trkseg>"#);
        for _ in 0..=MAX_POINTS {
            xml.push_str(&point);
        }
        // Not read: the limit is passed before it.
        xml.push_str("<trkpt>broken");
        assert_eq!(
            error(&xml),
            format!("the file holds more than {MAX_POINTS} points")
        );
    }

    #[test]
    fn accepts_exactly_max_points() {
        let point = trkpt("48.85", "2.35", "2024-05-01T08:00:00Z");
        let mut xml = String::from(r#"<gpx version="1.1"><trk><trkseg>"#);
        for _ in 0..MAX_POINTS {
            xml.push_str(&point);
        }
        xml.push_str("</trkseg></trk></gpx>");
        assert_eq!(read(&xml).map(|points| points.len()), Ok(MAX_POINTS));
    }

    #[test]
    fn skips_deep_unknown_elements_and_refuses_absurd_nesting() {
        let nested =
            |depth: usize| format!("{}{}{}", "<x>".repeat(depth), "text", "</x>".repeat(depth));
        let xml = gpx11(&format!(
            "<extensions>{}</extensions><trk><trkseg>{}</trkseg></trk>",
            nested(50),
            trkpt("48.85", "2.35", "2024-05-01T08:00:00Z")
        ));
        assert_eq!(read(&xml).map(|points| points.len()), Ok(1));
        let deep = gpx11(&nested(100));
        assert!(error(&deep).contains("more than 64 deep"));
    }
}
