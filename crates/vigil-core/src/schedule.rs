//! Schedule math for `[[services.NAME.schedule]]`: when does a schedule fire next.
