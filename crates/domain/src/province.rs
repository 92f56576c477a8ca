//! Which of the default regions a province belongs to.

/// China's provinces and province-level regions, by the geographic region
/// of [`crate::Regions::DEFAULT`] they belong to. Names are matched without
/// regard to case, in pinyin (`"Shaanxi"`) or Chinese (`"陕西"`).
const PROVINCES: &[(&str, &str, &str)] = &[
    ("Beijing", "北京", "north"),
    ("Tianjin", "天津", "north"),
    ("Hebei", "河北", "north"),
    ("Shanxi", "山西", "north"),
    ("Inner Mongolia", "内蒙古", "north"),
    ("Liaoning", "辽宁", "northeast"),
    ("Jilin", "吉林", "northeast"),
    ("Heilongjiang", "黑龙江", "northeast"),
    ("Shanghai", "上海", "east"),
    ("Jiangsu", "江苏", "east"),
    ("Zhejiang", "浙江", "east"),
    ("Anhui", "安徽", "east"),
    ("Fujian", "福建", "east"),
    ("Jiangxi", "江西", "east"),
    ("Shandong", "山东", "east"),
    ("Taiwan", "台湾", "east"),
    ("Henan", "河南", "central"),
    ("Hubei", "湖北", "central"),
    ("Hunan", "湖南", "central"),
    ("Guangdong", "广东", "south"),
    ("Guangxi", "广西", "south"),
    ("Hainan", "海南", "south"),
    ("Hong Kong", "香港", "south"),
    ("Macau", "澳门", "south"),
    ("Chongqing", "重庆", "southwest"),
    ("Sichuan", "四川", "southwest"),
    ("Guizhou", "贵州", "southwest"),
    ("Yunnan", "云南", "southwest"),
    ("Tibet", "西藏", "southwest"),
    ("Shaanxi", "陕西", "northwest"),
    ("Gansu", "甘肃", "northwest"),
    ("Qinghai", "青海", "northwest"),
    ("Ningxia", "宁夏", "northwest"),
    ("Xinjiang", "新疆", "northwest"),
];

/// The default region of a province, if the name is known.
pub fn default_region_of_province(province: &str) -> Option<&'static str> {
    let wanted = province.trim();
    PROVINCES
        .iter()
        .find(|(pinyin, chinese, _)| pinyin.eq_ignore_ascii_case(wanted) || *chinese == wanted)
        .map(|(_, _, region)| *region)
}

/// A province as people write it, and the default region it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Province {
    /// In pinyin: `"Inner Mongolia"`.
    pub name: &'static str,
    /// In Chinese: `"内蒙古"`.
    pub name_zh: &'static str,
    pub region: &'static str,
}

/// Every province [`default_region_of_province`] knows, north to south-west
/// by region.
pub fn provinces() -> impl Iterator<Item = Province> {
    PROVINCES.iter().map(|&(name, name_zh, region)| Province {
        name,
        name_zh,
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Regions;

    #[test]
    fn every_province_maps_to_a_default_region() {
        for (pinyin, chinese, region) in PROVINCES {
            assert!(Regions::DEFAULT.contains(region), "{pinyin}");
            assert_eq!(default_region_of_province(pinyin), Some(*region));
            assert_eq!(default_region_of_province(chinese), Some(*region));
        }
        assert_eq!(default_region_of_province(" Shaanxi "), Some("northwest"));
        assert_eq!(default_region_of_province("SHANXI"), Some("north"));
        assert_eq!(default_region_of_province("Atlantis"), None);
    }
}
