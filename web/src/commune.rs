//! The commune directory: rooms and the houses that belong to them, kept in
//! `DATA/commune.json`. First start writes a demo commune: room `demo` with six houses.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A commune's rooms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Commune {
    /// Commune name.
    pub name: String,
    /// Its meeting rooms, each a separate meeting space with its own houses and tokens.
    pub rooms: Vec<RoomInfo>,
}

/// One room and its houses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomInfo {
    /// Room id (URL-safe).
    pub id: String,
    /// What the pages show for it ("Phòng họp UBND xã").
    pub title: String,
    /// The cultural houses that join its meetings.
    pub houses: Vec<House>,
}

/// A cultural house.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct House {
    /// House id (URL-safe).
    pub id: String,
    /// Display name.
    pub name: String,
}

impl Commune {
    /// The demo commune.
    pub fn demo() -> Self {
        let houses = (1..=6)
            .map(|i| House {
                id: format!("house-{i}"),
                name: format!("Nhà văn hoá thôn {i}"),
            })
            .collect();
        Self {
            name: "Xã Đình (demo)".into(),
            rooms: vec![RoomInfo {
                id: "demo".into(),
                title: "Họp trực tuyến xã (demo)".into(),
                houses,
            }],
        }
    }

    /// Load `dir/commune.json`, writing the demo commune when there is none.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("commune.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = Self::demo();
                let tmp = dir.join("commune.json.tmp");
                std::fs::write(&tmp, serde_json::to_vec_pretty(&c)?)?;
                std::fs::rename(&tmp, &path)?;
                Ok(c)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A room by id.
    pub fn room(&self, id: &str) -> Option<&RoomInfo> {
        self.rooms.iter().find(|r| r.id == id)
    }
}
