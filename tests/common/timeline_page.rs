//! Parses a timeline page back (quick-xml): the run groups in document
//! order with their bar geometry and hover titles, and every text.

#![allow(dead_code)]

use quick_xml::events::Event;
use quick_xml::Reader;

/// What the tests look at in the parsed page.
#[derive(Debug, Default)]
pub struct Page {
    /// `data-run` of each `<g class="run">`, in document order.
    pub runs: Vec<String>,
    /// Per run: the x of its first rect (the bar's start) and whether it
    /// has a wait rect, and its title text.
    pub first_x: Vec<f64>,
    pub has_wait: Vec<bool>,
    pub titles: Vec<String>,
    /// Every attribute value and text node.
    pub texts: Vec<String>,
    pub wait_x_end: Vec<Option<f64>>,
    pub held_x: Vec<Option<f64>>,
    /// Per run: the right end of its bar.
    pub end_x: Vec<f64>,
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .map(|a| a.unwrap())
        .find(|a| a.key.as_ref() == name.as_bytes())
        .map(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .unwrap()
                .into_owned()
        })
}

pub fn parse(html: &str) -> Page {
    let mut r = Reader::from_str(html);
    let mut p = Page::default();
    let mut depth_in_run: Option<usize> = None;
    let mut depth = 0usize;
    let mut in_run_title = false;
    loop {
        let ev = r.read_event().expect("the page is well-formed XML");
        match ev {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_start = matches!(ev, Event::Start(_));
                for a in e.attributes() {
                    p.texts.push(
                        a.unwrap()
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap()
                            .into_owned(),
                    );
                }
                let name = e.name().as_ref().to_vec();
                let class = attr(e, "class").unwrap_or_default();
                if name == b"g" && class == "run" {
                    p.runs.push(attr(e, "data-run").unwrap());
                    p.first_x.push(f64::NAN);
                    p.has_wait.push(false);
                    p.titles.push(String::new());
                    p.wait_x_end.push(None);
                    p.held_x.push(None);
                    p.end_x.push(0.0);
                    depth_in_run = Some(depth);
                } else if depth_in_run.is_some() && name == b"rect" {
                    let i = p.runs.len() - 1;
                    let x: f64 = attr(e, "x").unwrap().parse().unwrap();
                    let w: f64 = attr(e, "width").unwrap().parse().unwrap();
                    p.end_x[i] = p.end_x[i].max(x + w);
                    if p.first_x[i].is_nan() {
                        p.first_x[i] = x;
                    }
                    if class == "wait" {
                        p.has_wait[i] = true;
                        p.wait_x_end[i] = Some(x + w);
                    }
                    if class == "held" {
                        p.held_x[i] = Some(x);
                    }
                } else if name == b"title" && depth_in_run == Some(depth - 1) {
                    in_run_title = true;
                }
                if is_start {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth -= 1;
                in_run_title = false;
                if depth_in_run == Some(depth) {
                    depth_in_run = None;
                }
            }
            Event::Text(ref e) => {
                let text = e
                    .xml_content(quick_xml::XmlVersion::Implicit1_0)
                    .unwrap()
                    .into_owned();
                if in_run_title {
                    let i = p.titles.len() - 1;
                    p.titles[i].push_str(&text);
                }
                p.texts.push(text);
            }
            Event::GeneralRef(ref e) => {
                let name = e.decode().unwrap().into_owned();
                let c = match name.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "#39" => "'",
                    other => panic!("unexpected entity {other}"),
                };
                if in_run_title {
                    let i = p.titles.len() - 1;
                    p.titles[i].push_str(c);
                }
                p.texts.push(c.to_string());
            }
            _ => {}
        }
    }
    p
}
