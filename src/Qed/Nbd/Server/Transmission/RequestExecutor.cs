using System.Runtime.CompilerServices;
using Qed.Extents;
using Qed.IO;
using Qed.Nbd.Protocol;

namespace Qed.Nbd.Server.Transmission;

/// <summary>
/// Runs a validated request against the export's device and builds its reply. One algorithm for both ways of running:
/// <c>useAsync: false</c> (inline on the reader, blocking calls that complete at once for cached data) and
/// <c>useAsync: true</c> (dispatched, awaiting the engine). Engine failures become error replies, never exceptions.
/// </summary>
internal static class RequestExecutor
{
    /// <summary>Most READ runs (data and hole chunks) one reply carries; past that the range goes out as one data chunk.</summary>
    private const int MaxReadRuns = 64;

    /// <summary>Most extents in one BLOCK_STATUS chunk (qemu caps at 131072, NBD.md 4.1); the client asks again for the rest.</summary>
    internal const int MaxStatusExtents = 32 * 1024;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask ExecuteAsync(TransmissionRequest request, NbdSession session, bool useAsync, Action<string> report, FileRangeSender? files = null)
    {
        var header = request.Header;
        try
        {
            switch (header.Type)
            {
                case NbdCommand.Read:
                    await ReadAsync(request, session, useAsync, files).ConfigureAwait(false);
                    break;
                case NbdCommand.Write:
                    await WriteAsync(request, session.Export.Device, useAsync).ConfigureAwait(false);
                    break;
                case NbdCommand.Flush:
                    await Flush(session.Export.Device, useAsync).ConfigureAwait(false);
                    ReplyFormat.Simple(request, NbdError.None, withData: false);
                    break;
                case NbdCommand.Trim:
                    await TrimAsync(request, session.Export, useAsync).ConfigureAwait(false);
                    break;
                case NbdCommand.WriteZeroes:
                    await WriteZeroesAsync(request, session, useAsync).ConfigureAwait(false);
                    break;
                case NbdCommand.Cache:
                    ReplyFormat.Simple(request, NbdError.None, withData: false); // advisory: the page cache does its own read-ahead
                    break;
                case NbdCommand.BlockStatus:
                    await BlockStatusAsync(request, session, useAsync).ConfigureAwait(false);
                    break;
                default:
                    ReplyFormat.Error(request, session.StructuredReplies, NbdError.Inval, $"invalid request type ({header.Type})");
                    break;
            }
        }
        catch (Exception e)
        {
            uint error = RequestErrors.From(e);
            string name = RequestValidation.Name(header.Type);
            report($"{name} of {header.Length} bytes at {header.Offset} failed: {e.Message}");
            try
            {
                ReplyFormat.Error(request, session.StructuredReplies, error, $"{name} failed: {e.Message}");
            }
            catch (Exception)
            {
                // Whatever went wrong making the message, the client still gets its answer: a bare simple reply.
                request.ClearReply();
                ReplyFormat.Simple(request, error, withData: false);
            }
        }
    }

    private static async ValueTask ReadAsync(TransmissionRequest request, NbdSession session, bool useAsync, FileRangeSender? files)
    {
        var header = request.Header;
        var device = session.Export.Device;
        if (header.Length == 0)
        {
            if (session.StructuredReplies)
            {
                ReplyFormat.None(request);
            }
            else
            {
                ReplyFormat.Simple(request, NbdError.None, withData: false);
            }

            return;
        }

        long offset = (long)header.Offset;
        long length = header.Length;
        bool sparse = session.StructuredReplies && (header.Flags & NbdCommandFlags.Df) == 0;
        if (sparse)
        {
            await FindRunsAsync(request, device, offset, length, useAsync).ConfigureAwait(false);
            if (request.Runs.Count == 1 && request.Runs[0].IsData)
            {
                var extent = request.FirstExtent;
                if (files is not null && length >= FileRangeSender.MinimumLength && extent.Length == length && extent.HostOffset >= 0
                    && extent.Device is Qed.Image.QedImage or RawImage
                    && files.DescriptorFor(extent.Device.FileName) is var descriptor and >= 0)
                {
                    // One stretch of one file: the data goes from the page cache to the socket (FileRangeSender).
                    request.ReserveScratch(ReplyFormat.DataChunkOverhead);
                    ReplyFormat.DataChunkHeader(request, header.Offset, length, done: true);
                    request.FileDescriptor = descriptor;
                    request.FileOffset = extent.HostOffset;
                    request.FileLength = length;
                    return;
                }

                sparse = false; // all data: one chunk, as with DF
            }
        }

        if (!sparse)
        {
            request.Data.Allocate(length);
            await ReadDataAsync(request, device, offset, 0, length, useAsync).ConfigureAwait(false);
            if (session.StructuredReplies)
            {
                request.ReserveScratch(ReplyFormat.DataChunkOverhead);
                ReplyFormat.DataChunk(request, header.Offset, 0, length, done: true);
            }
            else
            {
                ReplyFormat.Simple(request, NbdError.None, withData: true);
            }

            return;
        }

        long dataBytes = 0;
        foreach (var run in request.Runs)
        {
            dataBytes += run.IsData ? run.Length : 0;
        }

        request.Data.Allocate(dataBytes);
        long dataAt = 0;
        foreach (var run in request.Runs)
        {
            if (run.IsData)
            {
                await ReadDataAsync(request, device, run.Offset, dataAt, run.Length, useAsync).ConfigureAwait(false);
                dataAt += run.Length;
            }
        }

        // Every read is done: no error can follow, so the last chunk carries DONE (NBD.md 2.3).
        request.ReserveScratch(request.Runs.Count * Math.Max(ReplyFormat.DataChunkOverhead, ReplyFormat.HoleChunkSize));
        dataAt = 0;
        for (int i = 0; i < request.Runs.Count; i++)
        {
            var run = request.Runs[i];
            bool done = i == request.Runs.Count - 1;
            if (run.IsData)
            {
                ReplyFormat.DataChunk(request, (ulong)run.Offset, dataAt, run.Length, done);
                dataAt += run.Length;
            }
            else
            {
                ReplyFormat.HoleChunk(request, (ulong)run.Offset, (uint)run.Length, done);
            }
        }
    }

    /// <summary>Splits a READ range into data and reads-as-zeros runs (as qemu-nbd's sparse reads); too fragmented a range becomes one data run.</summary>
    private static async ValueTask FindRunsAsync(TransmissionRequest request, BlockDevice device, long offset, long length, bool useAsync)
    {
        var runs = request.Runs;
        runs.Clear();
        long end = offset + length;
        for (long at = offset; at < end;)
        {
            var extent = useAsync
                ? await ExtentMap.GetExtentAsync(device, at, end - at).ConfigureAwait(false)
                : ExtentMap.GetExtent(device, at, end - at);
            if (at == offset)
            {
                request.FirstExtent = extent;
            }

            bool data = extent.IsData;
            if (runs.Count > 0 && runs[^1].IsData == data)
            {
                runs[^1] = runs[^1] with { Length = runs[^1].Length + extent.Length };
            }
            else if (runs.Count == MaxReadRuns)
            {
                runs.Clear();
                runs.Add(new ReadRun(offset, length, IsData: true));
                return;
            }
            else
            {
                runs.Add(new ReadRun(at, extent.Length, data));
            }

            at += extent.Length;
        }
    }

    private static async ValueTask ReadDataAsync(TransmissionRequest request, BlockDevice device, long offset, long dataStart, long length, bool useAsync)
    {
        for (long done = 0; done < length;)
        {
            var slice = request.Data.SliceAt(dataStart + done, length - done);
            if (useAsync)
            {
                await device.ReadAsync(slice, offset + done).ConfigureAwait(false);
            }
            else
            {
                device.Read(slice, offset + done);
            }

            done += slice.Length;
        }
    }

    private static async ValueTask WriteAsync(TransmissionRequest request, BlockDevice device, bool useAsync)
    {
        var header = request.Header;
        bool fua = (header.Flags & NbdCommandFlags.Fua) != 0;
        var data = request.Data;
        long offset = (long)header.Offset;
        for (int i = 0; i < data.SegmentCount; i++)
        {
            // Force unit access on the last piece: its flush makes the earlier pieces durable too.
            var flags = fua && i == data.SegmentCount - 1 ? WriteFlags.ForceUnitAccess : WriteFlags.None;
            var segment = data.Segment(i);
            if (useAsync)
            {
                await device.WriteAsync(segment, offset, flags).ConfigureAwait(false);
            }
            else
            {
                device.Write(segment, offset, flags);
            }

            offset += segment.Length;
        }

        data.Release(); // the payload is on the device; the reply carries none
        ReplyFormat.Simple(request, NbdError.None, withData: false);
    }

    private static ValueTask Flush(BlockDevice device, bool useAsync)
    {
        if (useAsync)
        {
            return device.FlushAsync();
        }

        device.Flush();
        return ValueTask.CompletedTask;
    }

    private static async ValueTask TrimAsync(TransmissionRequest request, NbdExport export, bool useAsync)
    {
        var header = request.Header;
        if (export.Discard == NbdDiscardMode.Unmap && header.Length > 0)
        {
            if (useAsync)
            {
                await export.Device.DiscardAsync((long)header.Offset, header.Length).ConfigureAwait(false);
            }
            else
            {
                export.Device.Discard((long)header.Offset, header.Length);
            }

            if ((header.Flags & NbdCommandFlags.Fua) != 0)
            {
                await Flush(export.Device, useAsync).ConfigureAwait(false);
            }
        }

        ReplyFormat.Simple(request, NbdError.None, withData: false);
    }

    private static async ValueTask WriteZeroesAsync(TransmissionRequest request, NbdSession session, bool useAsync)
    {
        var header = request.Header;
        var device = session.Export.Device;
        if ((header.Flags & NbdCommandFlags.FastZero) != 0 && (device.Capabilities & BlockDeviceCapabilities.ZeroFast) == 0)
        {
            // Refused before touching anything: the client then writes zeros itself (NBD.md 2.6).
            ReplyFormat.Error(request, session.StructuredReplies, NbdError.NotSup, "fast zeroing is not supported");
            return;
        }

        if (header.Length > 0)
        {
            var flags = (header.Flags & NbdCommandFlags.NoHole) != 0 ? WriteZeroesFlags.None : WriteZeroesFlags.MayUnmap;
            if ((header.Flags & NbdCommandFlags.Fua) != 0)
            {
                flags |= WriteZeroesFlags.ForceUnitAccess;
            }

            if (useAsync)
            {
                await device.WriteZeroesAsync((long)header.Offset, header.Length, flags).ConfigureAwait(false);
            }
            else
            {
                device.WriteZeroes((long)header.Offset, header.Length, flags);
            }
        }

        ReplyFormat.Simple(request, NbdError.None, withData: false);
    }

    /// <summary>
    /// One walk of the chain-flattened extent map gives both contexts: base:allocation (data 0, reads as zeros
    /// HOLE|ZERO, as qemu-nbd) and qemu:allocation-depth. Extents with equal values are merged, none is empty, none runs
    /// past the request; with REQ_ONE each context gets exactly one.
    /// </summary>
    private static async ValueTask BlockStatusAsync(TransmissionRequest request, NbdSession session, bool useAsync)
    {
        var header = request.Header;
        var device = session.Export.Device;
        bool reqOne = (header.Flags & NbdCommandFlags.ReqOne) != 0;
        bool wantBase = session.BaseAllocationContextId != 0;
        bool wantDepth = session.AllocationDepthContextId != 0;
        var baseExtents = request.BaseExtents;
        var depthExtents = request.DepthExtents;
        baseExtents.Clear();
        depthExtents.Clear();
        int limit = reqOne ? 1 : MaxStatusExtents;
        bool baseFull = !wantBase;
        bool depthFull = !wantDepth;

        long end = (long)header.Offset + header.Length;
        for (long at = (long)header.Offset; at < end && !(baseFull && depthFull);)
        {
            var extent = useAsync
                ? await ExtentMap.GetExtentAsync(device, at, end - at).ConfigureAwait(false)
                : ExtentMap.GetExtent(device, at, end - at);
            uint length = (uint)extent.Length; // within the request, whose length is a u32
            if (!baseFull)
            {
                baseFull = !Append(baseExtents, length, extent.IsData ? 0 : NbdChunk.StateHole | NbdChunk.StateZero, limit);
            }

            if (!depthFull)
            {
                depthFull = !Append(depthExtents, length, (uint)extent.AllocationDepth, limit);
            }

            at = extent.End;
        }

        int size = (wantBase ? ReplyFormat.BlockStatusChunkSize(baseExtents.Count) : 0) + (wantDepth ? ReplyFormat.BlockStatusChunkSize(depthExtents.Count) : 0);
        request.ReserveScratch(size);
        if (wantBase)
        {
            ReplyFormat.BlockStatusChunk(request, session.BaseAllocationContextId, baseExtents, done: !wantDepth);
        }

        if (wantDepth)
        {
            ReplyFormat.BlockStatusChunk(request, session.AllocationDepthContextId, depthExtents, done: true);
        }
    }

    /// <summary>Adds an extent, merged into the last when the values match; false once the list is full and the extent did not fit.</summary>
    private static bool Append(List<NbdExtent> extents, uint length, uint flags, int limit)
    {
        if (extents.Count > 0 && extents[^1].Flags == flags)
        {
            extents[^1] = extents[^1] with { Length = extents[^1].Length + length };
            return true;
        }

        if (extents.Count == limit)
        {
            return false;
        }

        extents.Add(new NbdExtent(length, flags));
        return true;
    }
}
