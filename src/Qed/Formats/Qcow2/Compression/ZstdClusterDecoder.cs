using ZstdSharp.Unsafe;

namespace Qed.Formats.Qcow2.Compression;

/// <summary>
/// Decodes zstd clusters with ZstdSharp's streaming decoder, as QEMU does: frames are decoded one after the other
/// until the cluster is full, the last frame must end exactly there, and trailing bytes are ignored. The output
/// buffer is declared stable, so the decoder writes into the cluster directly and never allocates a window buffer
/// for whatever window size a hostile frame claims. One decoder context per thread, reset between clusters.
/// </summary>
internal sealed unsafe class ZstdClusterDecoder
{
    private const ZSTD_dParameter StableOutputBuffer = ZSTD_dParameter.ZSTD_d_experimentalParam2;

    [ThreadStatic] private static ZstdClusterDecoder? t_decoder;

    private readonly ZSTD_DCtx_s* _context;

    private ZstdClusterDecoder()
    {
        _context = Methods.ZSTD_createDCtx();
        if (_context == null)
        {
            GC.SuppressFinalize(this);
            throw new InsufficientMemoryException("zstd: cannot create a decoder context");
        }
    }

    ~ZstdClusterDecoder() => Methods.ZSTD_freeDCtx(_context);

    /// <summary>The calling thread's decoder (created on first use).</summary>
    public static ZstdClusterDecoder ForCurrentThread => t_decoder ??= new ZstdClusterDecoder();

    public void Decompress(ReadOnlySpan<byte> input, Span<byte> cluster)
    {
        // Parameters survive only a session reset, so set the stable buffer after a full reset each time.
        Methods.ZSTD_DCtx_reset(_context, ZSTD_ResetDirective.ZSTD_reset_session_and_parameters);
        Methods.ZSTD_DCtx_setParameter(_context, StableOutputBuffer, 1);
        fixed (byte* source = input)
        fixed (byte* destination = cluster)
        {
            var inBuffer = new ZSTD_inBuffer_s { src = source, size = (nuint)input.Length, pos = 0 };
            var outBuffer = new ZSTD_outBuffer_s { dst = destination, size = (nuint)cluster.Length, pos = 0 };
            nuint result = 0;
            while (outBuffer.pos < outBuffer.size)
            {
                nuint inBefore = inBuffer.pos, outBefore = outBuffer.pos;
                result = Methods.ZSTD_decompressStream(_context, &outBuffer, &inBuffer);
                if (Methods.ZSTD_isError(result))
                {
                    throw Qcow2Compression.Corrupt(Qcow2CompressionType.Zstd,
                        $"{Methods.ZSTD_getErrorName(result)} after {outBuffer.pos} bytes");
                }
                // No progress means the input ran out (or the decoder is stuck): never loop on it.
                if (inBuffer.pos == inBefore && outBuffer.pos == outBefore)
                {
                    throw Qcow2Compression.Corrupt(Qcow2CompressionType.Zstd,
                        $"the {input.Length}-byte span decodes to {outBuffer.pos} of {cluster.Length} bytes");
                }
            }
            // A full cluster whose frame is not finished would decode to more than a cluster.
            if (result != 0)
            {
                throw Qcow2Compression.Corrupt(Qcow2CompressionType.Zstd, $"the frame holds more than {cluster.Length} bytes");
            }
        }
    }
}
