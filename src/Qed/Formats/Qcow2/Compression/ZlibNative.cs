using System.Runtime.InteropServices;

namespace Qed.Formats.Qcow2.Compression;

/// <summary>
/// The few entry points of the system zlib (<c>libz.so.1</c>) that compressing a qcow2 cluster needs. The system
/// library is used, not a managed encoder, because QEMU's inflater has a 4 KiB window (.NET's DeflateStream writes
/// with 32 KiB, which QEMU cannot read) and because with QEMU's own parameters it produces QEMU's bytes exactly.
/// </summary>
internal static unsafe partial class ZlibNative
{
    private const string Library = "libz.so.1";

    public const int Ok = 0, StreamEnd = 1, BufferError = -5;
    public const int Finish = 4;
    public const int Deflated = 8;
    public const int DefaultCompression = -1;
    public const int DefaultStrategy = 0;

    /// <summary>zlib's <c>z_stream</c>; <c>uLong</c> is a C long (8 bytes on 64-bit Unix, 4 on Windows).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ZStream
    {
        public byte* NextIn;
        public uint AvailIn;
        public CULong TotalIn;
        public byte* NextOut;
        public uint AvailOut;
        public CULong TotalOut;
        public byte* Message;
        public void* State;
        public void* Alloc;
        public void* Free;
        public void* Opaque;
        public int DataType;
        public CULong Adler;
        public CULong Reserved;
    }

    [LibraryImport(Library, EntryPoint = "zlibVersion")]
    public static partial byte* Version();

    [LibraryImport(Library, EntryPoint = "deflateInit2_")]
    public static partial int DeflateInit2(ZStream* stream, int level, int method, int windowBits, int memLevel, int strategy, byte* version, int streamSize);

    [LibraryImport(Library, EntryPoint = "deflate")]
    public static partial int Deflate(ZStream* stream, int flush);

    [LibraryImport(Library, EntryPoint = "deflateReset")]
    public static partial int DeflateReset(ZStream* stream);

    [LibraryImport(Library, EntryPoint = "deflateEnd")]
    public static partial int DeflateEnd(ZStream* stream);
}
