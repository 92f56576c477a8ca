//! Which of the default regions a province belongs to.

/// China's provinces and province-level regions, by the geographic region
/// of [`crate::Regions::DEFAULT`] they belong to. Names are matched without
/// regard to case, in pinyin (`"Shaanxi"`) or Chinese (`"陕西"`).
const PROVINCES: &[(&str, &str, &str)] = &[
    ("beijing", "北京", "north"),
    ("tianjin", "天津", "north"),
    ("hebei", "河北", "north"),
    ("shanxi", "山西", "north"),
    ("inner mongolia", "内蒙古", "north"),
    ("liaoning", "辽宁", "northeast"),
    ("jilin", "吉林", "northeast"),
    ("heilongjiang", "黑龙江", "northeast"),
    ("shanghai", "上海", "east"),
    ("jiangsu", "江苏", "east"),
    ("zhejiang", "浙江", "east"),
    ("anhui", "安徽", "east"),
    ("fujian", "福建", "east"),
    ("jiangxi", "江西", "east"),
    ("shandong", "山东", "east"),
    ("taiwan", "台湾", "east"),
    ("henan", "河南", "central"),
    ("hubei", "湖北", "central"),
    ("hunan", "湖南", "central"),
    ("guangdong", "广东", "south"),
    ("guangxi", "广西", "south"),
    ("hainan", "海南", "south"),
    ("hong kong", "香港", "south"),
    ("macau", "澳门", "south"),
    ("chongqing", "重庆", "southwest"),
    ("sichuan", "四川", "southwest"),
    ("guizhou", "贵州", "southwest"),
    ("yunnan", "云南", "southwest"),
    ("tibet", "西藏", "southwest"),
    ("shaanxi", "陕西", "northwest"),
    ("gansu", "甘肃", "northwest"),
    ("qinghai", "青海", "northwest"),
    ("ningxia", "宁夏", "northwest"),
    ("xinjiang", "新疆", "northwest"),
];

/// The default region of a province, if the name is known.
pub fn default_region_of_province(province: &str) -> Option<&'static str> {
    let wanted = province.trim().to_lowercase();
    PROVINCES
        .iter()
        .find(|(pinyin, chinese, _)| *pinyin == wanted || *chinese == wanted)
        .map(|(_, _, region)| *region)
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
