// The node's workers are VRouterIO's forwarding workers (the loop lives with the dataplane,
// built with the hot-path settings); this is how the node service makes one from its config.

import VRouterCore
import VRouterIO

extension Worker {
    static func start(
        index: Int,
        cpu: Int?,
        service: NodeService,
        taps: [(UInt16, TapPort, Int)],
        fabric: (UInt16, AFPacketPort)?
    ) throws(SystemError) -> Worker {
        var pc = PipelineConfig()
        pc.flowCapacity = service.config.flowCapacity
        pc.flowCapacity6 = service.config.flowCapacity6
        pc.flowIdleTimeout = UInt32(min(service.config.flowIdleTimeout * 1000, Double(UInt32.max / 4)))
        // Each worker translates to its own share of the node's ports (the fabric's receive
        // steering sends replies to the share's owner).
        pc.snat = service.config.snat.map {
            SNATPortRange(first: $0.first, last: $0.last, slice: index, slices: service.config.workers)
        }
        return try start(
            index: index,
            cpu: cpu,
            configuration: WorkerConfiguration(
                poolBuffers: service.config.poolBuffers,
                bufferSize: service.config.bufferSize,
                bigBuffers: service.config.bigBuffers,
                pipeline: pc,
                multishotReads: service.config.multishotReads,
                idleYields: service.config.idleYields
            ),
            publication: service.publication,
            taps: taps,
            fabric: fabric
        )
    }
}
