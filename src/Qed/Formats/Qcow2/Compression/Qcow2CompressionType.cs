namespace Qed.Formats.Qcow2.Compression;

/// <summary>The compression_type header byte (offset 104) of a qcow2 v3 image: how compressed clusters are encoded.</summary>
internal enum Qcow2CompressionType : byte
{
    /// <summary>Raw DEFLATE with a 4 KiB window, no zlib header or checksum (the default, and the only type of v2).</summary>
    Zlib = 0,

    /// <summary>One or more zstd frames (incompatible feature bit 3).</summary>
    Zstd = 1,
}
