-- A realistic catalog: 10 categories x 8 kinds x 4 variants = 320 products,
-- deterministic so every environment (and every test) sees the same catalog.
-- Prices and stock come from a hash of the product id, not random().
WITH
categories (ci, category, kinds) AS (
    VALUES
    (1, 'Kitchen',     ARRAY['French Press', 'Chef''s Knife', 'Cutting Board', 'Cast Iron Skillet', 'Pour-Over Kettle', 'Mixing Bowl Set', 'Spice Grinder', 'Dutch Oven']),
    (2, 'Outdoor',     ARRAY['Hiking Backpack', 'Trekking Poles', 'Camping Stove', 'Sleeping Bag', 'Headlamp', 'Water Filter', 'Dome Tent', 'Rain Shell']),
    (3, 'Office',      ARRAY['Desk Lamp', 'Notebook', 'Fountain Pen', 'Monitor Stand', 'Ergonomic Chair', 'Desk Organizer', 'Whiteboard', 'Paper Tray']),
    (4, 'Electronics', ARRAY['Wireless Earbuds', 'USB-C Charger', 'Mechanical Keyboard', 'Webcam', 'Bluetooth Speaker', 'Power Bank', 'Smart Plug', 'HDMI Cable']),
    (5, 'Apparel',     ARRAY['Merino T-Shirt', 'Denim Jacket', 'Wool Socks', 'Running Shorts', 'Flannel Shirt', 'Down Vest', 'Beanie', 'Chino Trousers']),
    (6, 'Books',       ARRAY['Field Guide', 'Cookbook', 'Travel Journal', 'Atlas', 'Poetry Collection', 'Novel', 'History Primer', 'Sketchbook']),
    (7, 'Toys',        ARRAY['Building Blocks', 'Puzzle', 'Kite', 'Board Game', 'Plush Bear', 'Wooden Train', 'Yo-Yo', 'Marble Run']),
    (8, 'Garden',      ARRAY['Pruning Shears', 'Watering Can', 'Raised Bed Kit', 'Garden Gloves', 'Seed Starter Tray', 'Compost Bin', 'Hose Reel', 'Trowel']),
    (9, 'Sports',      ARRAY['Yoga Mat', 'Jump Rope', 'Kettlebell', 'Tennis Racket', 'Cycling Gloves', 'Foam Roller', 'Basketball', 'Swim Goggles']),
    (10, 'Home',       ARRAY['Throw Blanket', 'Scented Candle', 'Ceramic Vase', 'Linen Curtains', 'Wall Clock', 'Table Lamp', 'Bath Towel Set', 'Doormat'])
),
variants (vi, variant) AS (
    VALUES (1, 'Classic'), (2, 'Pro'), (3, 'Compact'), (4, 'Heritage')
),
rows AS (
    SELECT
        (c.ci - 1) * 32 + (k.ki - 1) * 4 + v.vi AS id,
        c.category,
        c.kinds[k.ki] AS kind,
        v.variant
    FROM categories c
    CROSS JOIN generate_series(1, 8) AS k (ki)
    CROSS JOIN variants v
)
INSERT INTO products (id, sku, name, description, category, price_cents)
SELECT
    id,
    'RL-' || lpad(id::text, 5, '0'),
    variant || ' ' || kind,
    'The ' || lower(variant) || ' edition of our ' || lower(kind) || ', from the '
        || lower(category) || ' range.',
    category,
    -- 4.99 .. 299.99, ending in .99
    (500 + (abs(hashtext('price' || id)) % 29500)) / 100 * 100 + 99
FROM rows;

-- Most products are well stocked; every 25th is a limited edition with only a
-- few units, which load tests use to exercise "sold out" paths.
INSERT INTO stock (product_id, available)
SELECT id,
       CASE WHEN id % 25 = 0 THEN 3 + (abs(hashtext('stock' || id)) % 5)
            ELSE 100 + (abs(hashtext('stock' || id)) % 900) END
FROM products;
