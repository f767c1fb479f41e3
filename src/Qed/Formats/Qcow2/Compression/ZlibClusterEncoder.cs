using System.Runtime.InteropServices;

namespace Qed.Formats.Qcow2.Compression;

/// <summary>
/// Compresses clusters the way QEMU does (raw DEFLATE, default level, windowBits -12 = 4 KiB window, memLevel 9,
/// default strategy; QCOW2.md §5.5), with the system zlib. One encoder per thread: its stream is reset, not
/// re-created, between clusters, which saves zlib's allocation of ~270 KiB per cluster.
/// </summary>
internal sealed unsafe class ZlibClusterEncoder
{
    private const int WindowBits = -12; // negative: raw deflate, no zlib header or checksum
    private const int MemLevel = 9;

    [ThreadStatic] private static ZlibClusterEncoder? t_encoder;

    // Native memory: zlib keeps a pointer back to the stream in its state and checks it, so the stream must not move.
    private readonly ZlibNative.ZStream* _stream;

    private ZlibClusterEncoder()
    {
        _stream = (ZlibNative.ZStream*)NativeMemory.AllocZeroed((nuint)sizeof(ZlibNative.ZStream));
        int result;
        try
        {
            result = ZlibNative.DeflateInit2(_stream, ZlibNative.DefaultCompression, ZlibNative.Deflated, WindowBits, MemLevel,
                ZlibNative.DefaultStrategy, ZlibNative.Version(), sizeof(ZlibNative.ZStream));
        }
        catch (Exception exception) when (exception is DllNotFoundException or EntryPointNotFoundException)
        {
            NativeMemory.Free(_stream);
            GC.SuppressFinalize(this);
            throw new QedUnsupportedException(
                "zlib compression needs the system zlib library (libz.so.1), which could not be loaded; compression_type=zstd does not");
        }
        if (result != ZlibNative.Ok)
        {
            NativeMemory.Free(_stream);
            GC.SuppressFinalize(this);
            throw new InvalidOperationException($"zlib deflateInit2 failed ({result})");
        }
    }

    ~ZlibClusterEncoder()
    {
        ZlibNative.DeflateEnd(_stream);
        NativeMemory.Free(_stream);
    }

    /// <summary>The calling thread's encoder (created on first use).</summary>
    public static ZlibClusterEncoder ForCurrentThread => t_encoder ??= new ZlibClusterEncoder();

    /// <summary>
    /// Compresses <paramref name="cluster"/> into at most <paramref name="capacity"/> bytes of
    /// <paramref name="destination"/>; returns the length, or -1 when the stream does not fit.
    /// </summary>
    public int Compress(ReadOnlySpan<byte> cluster, Span<byte> destination, int capacity)
    {
        fixed (byte* input = cluster)
        fixed (byte* output = destination)
        {
            _stream->NextIn = input;
            _stream->AvailIn = (uint)cluster.Length;
            _stream->NextOut = output;
            _stream->AvailOut = (uint)capacity;
            int result = ZlibNative.Deflate(_stream, ZlibNative.Finish);
            int written = capacity - (int)_stream->AvailOut;
            // Pointers into the caller's buffers must not outlive the fixed block, and the next cluster starts afresh.
            _stream->NextIn = null;
            _stream->NextOut = null;
            int reset = ZlibNative.DeflateReset(_stream);
            if (reset != ZlibNative.Ok)
            {
                throw new InvalidOperationException($"zlib deflateReset failed ({reset})");
            }
            return result switch
            {
                ZlibNative.StreamEnd => written,
                // Output space ran out before the stream ended: not worth compressing.
                ZlibNative.Ok or ZlibNative.BufferError => -1,
                _ => throw new InvalidOperationException($"zlib deflate failed ({result})"),
            };
        }
    }
}
