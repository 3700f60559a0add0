//! `plaza demo`'s shop: carol's "Carol's Trail Shop" with a few products (photos drawn here
//! as tiny PNGs, a few KB each), one sold in groups of three; a group alice opened and
//! shared into "Weekend hike"; and a flash sale starting a few minutes after start-up.
//! Idempotent like the rest of the demo: the shop, its products and alice's order are
//! found again, the group is shared only when its order is new, and a flash sale is added
//! only while none is on or coming.

use plaza_accounts::User;
use plaza_kernel::Timestamp;
use plaza_shop::{
    Address, FlashSaleInput, GroupChoice, OrderLine, OrderRequest, Product, ProductInput, ShopError, ShopHandle,
    SkuInput,
};
use plaza_wallet::model::IdempotencyKey;
use std::time::Duration;

/// (title, description, colours of the photo, SKUs as (name, price, stock, group price), group size).
type DemoProduct =
    (&'static str, &'static str, [[u8; 3]; 2], &'static [(&'static str, i64, i64, Option<i64>)], Option<i64>);

const PRODUCTS: &[DemoProduct] = &[
    (
        "Yunnan coffee beans 云南咖啡豆",
        "Medium roast arabica from Pu'er, 500 g. 云南普洱中度烘焙阿拉比卡咖啡豆。",
        [[111, 78, 55], [232, 200, 160]],
        &[("500 g", 2_400, 40, Some(1_800)), ("1 kg", 4_400, 20, Some(3_300))],
        Some(3),
    ),
    (
        "Trail thermos",
        "Keeps tea hot for 12 hours on the hike; 750 ml, steel.",
        [[7, 163, 90], [230, 245, 236]],
        &[("Green", 2_900, 25, None), ("Black", 2_900, 25, None)],
        None,
    ),
    (
        "Hiking socks, 3 pairs",
        "Merino blend, cushioned heel. 美利奴羊毛徒步袜。",
        [[37, 99, 235], [219, 234, 254]],
        &[("M", 1_500, 60, None), ("L", 1_500, 60, None)],
        None,
    ),
];

const SHOP_NAME: &str = "Carol's Trail Shop";

pub async fn seed(
    shop: &ShopHandle,
    media: &plaza_media::Media,
    (alice, carol): (&User, &User),
    hike_group_id: &str,
) -> anyhow::Result<()> {
    let shop_id = match shop.create_shop(carol, SHOP_NAME, Some("Everything for a weekend on the trail.")).await {
        Ok(created) => created.id,
        Err(ShopError::ShopAlreadyExists { shop_id }) => shop_id,
        Err(error) => return Err(error.into()),
    };
    let limit = plaza_kernel::PageLimit::parse(Some(200)).map_err(anyhow::Error::msg)?;
    let listed = shop.products(None, Some(&shop_id), limit, None).await?.items;
    let mut products: Vec<Product> = Vec::new();
    for (title, description, colours, skus, group_size) in PRODUCTS {
        let product = match listed.iter().find(|product| product.title == *title) {
            Some(product) => product.clone(),
            None => {
                let mut media_ids = Vec::new();
                for (index, colours) in [*colours, [colours[1], colours[0]]].iter().enumerate() {
                    let photo = media.upload(&carol.id, tiny_png(*colours, index).into()).await?;
                    media_ids.push(photo.id);
                }
                let input = ProductInput {
                    title: title.to_string(),
                    description: Some(description.to_string()),
                    media_ids,
                    skus: skus
                        .iter()
                        .map(|(name, price, stock, group_price)| SkuInput {
                            name: name.to_string(),
                            price: (*price, "USD".into()),
                            stock: *stock,
                            group_price: group_price.map(|amount| (amount, "USD".into())),
                        })
                        .collect(),
                    group_size: *group_size,
                };
                shop.create_product(carol, &shop_id, input).await?
            }
        };
        products.push(product);
    }
    let sku_id = products[0].skus[0].id.clone();

    // Alice opens a group on the coffee and shares it into "Weekend hike" (once).
    let address = Address::parse("Alice Chen", "12 Green Lake Road", "Kunming", "650031", "CN", "+86 871 5550 0101")?;
    let request = OrderRequest {
        lines: vec![OrderLine { sku_id: sku_id.clone(), quantity: 1, flash_sale_id: None }],
        address,
        group: GroupChoice::Open,
        pin: None,
    };
    let key = IdempotencyKey::parse("demo-group-buy").map_err(anyhow::Error::msg)?;
    let (order, replayed) = shop.place_order(alice, request, Some(&key)).await?;
    if let (false, Some(group_id)) = (replayed, order.group_buy_id.as_deref()) {
        shop.share_group_buy(alice, group_id, hike_group_id).await?;
    }

    // A flash sale on the thermos, five minutes after start-up, unless one is on or coming.
    if let Some(thermos) = products.get(1) {
        let now = Timestamp::now();
        let sales = shop.product_flash_sales(&thermos.id).await?;
        if !sales.iter().any(|sale| sale.ends_at.unix_millis() > now.unix_millis()) {
            let starts_at = now.plus(Duration::from_secs(5 * 60));
            shop.create_flash_sale(
                carol,
                FlashSaleInput {
                    sku_id: thermos.skus[0].id.clone(),
                    price: (1_900, "USD".into()),
                    quantity: 20,
                    starts_at,
                    ends_at: starts_at.plus(Duration::from_secs(60 * 60)),
                    per_user_limit: 2,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// A 64×64 PNG: a background colour with a disc of the other one (its place moved by
/// `variant`), stored uncompressed (a palette of two, so about 4 KB). The demo needs
/// photos, not an image crate.
fn tiny_png(colours: [[u8; 3]; 2], variant: usize) -> Vec<u8> {
    const SIZE: usize = 64;
    let centre = if variant == 0 { (32.0, 32.0) } else { (22.0, 40.0) };
    let mut raw = Vec::with_capacity(SIZE * (SIZE + 1));
    for y in 0..SIZE {
        raw.push(0); // No filter on this scanline.
        for x in 0..SIZE {
            let (dx, dy) = (x as f64 - centre.0, y as f64 - centre.1);
            raw.push(u8::from(dx * dx + dy * dy < 18.0 * 18.0));
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&(SIZE as u32).to_be_bytes());
    header.extend_from_slice(&(SIZE as u32).to_be_bytes());
    header.extend_from_slice(&[8, 3, 0, 0, 0]); // 8-bit palette, no interlace.
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"PLTE", &colours.concat());
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&[kind.as_slice(), data].concat());
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (index, block) in blocks.iter().enumerate() {
        out.push(u8::from(index + 1 == blocks.len()));
        let length = block.len() as u16;
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_photos_are_small_pngs_media_accepts() {
        let png = tiny_png([[0, 0, 0], [255, 255, 255]], 1);
        assert_eq!(plaza_media::sniff_image(&png), Some("image/png"));
        assert!(png.len() < 8 * 1024, "{} bytes", png.len());
        // The CRC of "IEND" with no data, as every PNG ends.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }
}
