using System.Diagnostics;
using Qed.IO;

namespace Qed.Cli.Commands.Bench;

/// <summary>
/// Sends the requests of a <c>qed bench</c> run to a device, keeping <see cref="BenchSettings.Depth"/> of them in flight.
/// </summary>
/// <remarks>
/// Algorithm:
/// <list type="number">
/// <item>One worker per slot (<c>min(depth, count)</c> of them), each with its own pre-allocated buffer, loops:
/// take the next request number with one interlocked increment, send the request, await it, count the
/// completion. So exactly <c>depth</c> requests are in flight until fewer than that are left, with no lock and no
/// allocation per request.</item>
/// <item>Request <c>k</c> goes to <c>offset + k·step</c>, wrapped at the image size as qemu-img does
/// (<c>(offset + k·step) mod size</c> for <c>k ≥ 1</c>; the first request is sent where <c>-o</c> says). A request
/// that then reaches past the end fails with an I/O error, as in qemu-img.</item>
/// <item>With a flush interval N, a flush follows every completion after which the number of requests not yet sent
/// is a multiple of N (qemu-img's rule; the last one comes after the final request). The requests between two
/// flushes form a batch. When draining (the default), a worker holding a request of batch b waits until batch b is
/// open; the worker whose completion ends batch b − 1 (all its requests done, since none of batch b may start
/// before) flushes and then opens batch b. Because N ≥ depth, at most one batch is ever waiting to open, so a single
/// reusable gate suffices. Without draining, the worker that completed the request flushes while the other
/// requests keep going.</item>
/// <item>The first failure stops the workers from taking new requests and opens every gate; it is reported once.</item>
/// </list>
/// The time runs from just before the first request is sent to the completion of the last one.
/// </remarks>
internal sealed class BenchRunner
{
    private readonly BlockDevice _device;
    private readonly BenchSettings _settings;
    private readonly long _imageSize;
    private readonly long _count;
    private readonly long _flushInterval;
    private readonly bool _drain;
    /// <summary>Added to a request number before dividing by the interval, so batches end where the requests left are a multiple of it.</summary>
    private readonly long _batchShift;
    private long _next;
    private long _completed;
    private long _openBatch;
    private TaskCompletionSource? _gate;
    private string? _failure;

    private BenchRunner(BlockDevice device, BenchSettings settings)
    {
        _device = device;
        _settings = settings;
        _imageSize = device.Size;
        _count = settings.Count;
        _flushInterval = settings.FlushInterval;
        _drain = settings.FlushInterval != 0 && settings.DrainOnFlush;
        _batchShift = _flushInterval == 0 ? 0 : (_flushInterval - _count % _flushInterval) % _flushInterval;
    }

    /// <summary>Runs the benchmark; returns the elapsed time and, if a request failed, qemu-img's message for it.</summary>
    public static async Task<(TimeSpan Elapsed, string? Failure)> RunAsync(BlockDevice device, BenchSettings settings)
    {
        var runner = new BenchRunner(device, settings);
        int slots = (int)Math.Min(settings.Depth, settings.Count);
        var buffers = new byte[slots][];
        for (int i = 0; i < slots; i++)
        {
            buffers[i] = GC.AllocateUninitializedArray<byte>(settings.Size, pinned: true);
            if (settings.Write)
            {
                buffers[i].AsSpan().Fill(settings.Pattern);
            }
        }
        // Blocking file reads run on pool threads: have one per slot ready rather than waiting for the pool to grow.
        ThreadPool.GetMinThreads(out int workerThreads, out int ioThreads);
        ThreadPool.SetMinThreads(Math.Max(workerThreads, Math.Min(slots + Environment.ProcessorCount, 512)), ioThreads);

        var workers = new Task[slots];
        var stopwatch = Stopwatch.StartNew();
        for (int i = 0; i < slots; i++)
        {
            byte[] buffer = buffers[i];
            workers[i] = Task.Run(() => runner.WorkerAsync(buffer));
        }
        await Task.WhenAll(workers).ConfigureAwait(false);
        stopwatch.Stop();
        return (stopwatch.Elapsed, Volatile.Read(ref runner._failure));
    }

    private async Task WorkerAsync(Memory<byte> buffer)
    {
        bool write = _settings.Write;
        while (Volatile.Read(ref _failure) is null)
        {
            long request = Interlocked.Increment(ref _next) - 1;
            if (request >= _count)
            {
                return;
            }
            if (_drain)
            {
                long batch = (request + _batchShift) / _flushInterval;
                if (batch > Volatile.Read(ref _openBatch))
                {
                    await WaitForBatchAsync(batch).ConfigureAwait(false);
                    if (Volatile.Read(ref _failure) is not null)
                    {
                        return;
                    }
                }
            }

            long offset = OffsetOf(request);
            if (offset > _imageSize - buffer.Length)
            {
                // qemu's block layer refuses a request past the end of the image with EIO.
                Fail("Failed request: Input/output error");
                return;
            }
            try
            {
                if (write)
                {
                    await _device.WriteAsync(buffer, offset).ConfigureAwait(false);
                }
                else
                {
                    await _device.ReadAsync(buffer, offset).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                Fail($"Failed request: {Program.Describe(e)}");
                return;
            }

            long completed = Interlocked.Increment(ref _completed);
            if (_flushInterval != 0 && (completed + _batchShift) % _flushInterval == 0)
            {
                try
                {
                    await _device.FlushAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    Fail($"Failed flush request: {Program.Describe(e)}");
                    return;
                }
                if (_drain)
                {
                    OpenBatch((completed + _batchShift) / _flushInterval);
                }
            }
        }
    }

    /// <summary>Where request <paramref name="request"/> goes: qemu-img adds the step and wraps at the image size after each request.</summary>
    private long OffsetOf(long request)
    {
        if (request == 0)
        {
            return _settings.Offset;
        }
        if (_imageSize == 0)
        {
            return 0;
        }
        return (long)(((UInt128)(ulong)_settings.Offset + (UInt128)(ulong)request * (ulong)_settings.Step) % (ulong)_imageSize);
    }

    private async ValueTask WaitForBatchAsync(long batch)
    {
        while (Volatile.Read(ref _openBatch) < batch)
        {
            var gate = Volatile.Read(ref _gate);
            if (gate is null)
            {
                var created = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                gate = Interlocked.CompareExchange(ref _gate, created, null) ?? created;
            }
            // Checked again after the gate is published: an opener that moved on meanwhile has released it or will.
            if (Volatile.Read(ref _openBatch) >= batch)
            {
                return;
            }
            await gate.Task.ConfigureAwait(false);
        }
    }

    /// <summary>Lets the requests of batches up to <paramref name="batch"/> go and wakes the waiting workers.</summary>
    private void OpenBatch(long batch)
    {
        long current = Volatile.Read(ref _openBatch);
        while (current < batch)
        {
            long seen = Interlocked.CompareExchange(ref _openBatch, batch, current);
            if (seen == current)
            {
                break;
            }
            current = seen;
        }
        Interlocked.Exchange(ref _gate, null)?.TrySetResult();
    }

    private void Fail(string message)
    {
        Interlocked.CompareExchange(ref _failure, message, null);
        OpenBatch(long.MaxValue);
    }
}
